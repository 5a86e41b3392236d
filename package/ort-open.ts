import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';

/** Opens a graph in onnxruntime (which also checks its external data) and releases it. */
export async function assertOrtOpens(path: string, displayName = path): Promise<void> {
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'disabled', executionMode: 'sequential', intraOpNumThreads: 1 });
  } catch (err) {
    throw new UserError(`${displayName}: onnxruntime cannot load it (${String((err as Error).message ?? err).split('\n')[0]})`);
  } finally {
    await session?.release();
  }
}
