import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';

/**
 * Opens a graph in onnxruntime (which also checks its external data) and releases it. Weight
 * pre-packing is off: it is not part of the check, and for a 1.7B float decoder it would
 * allocate a second copy of 6.5 GB of weights (the opening drops from minutes to seconds).
 */
export async function assertOrtOpens(path: string, displayName = path): Promise<void> {
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(path, {
      graphOptimizationLevel: 'disabled', executionMode: 'sequential', intraOpNumThreads: 1,
      extra: { session: { disable_prepacking: '1' } },
    });
  } catch (err) {
    throw new UserError(`${displayName}: onnxruntime cannot load it (${String((err as Error).message ?? err).split('\n')[0]})`);
  } finally {
    await session?.release();
  }
}
