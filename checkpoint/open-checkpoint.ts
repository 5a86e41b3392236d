import { resolve } from 'node:path';
import { dimsFromConfig, readCheckpointConfig, type CheckpointConfig, type ModelDims } from './config.js';
import { validateCheckpoint, type CheckpointReport } from './expected-tensors.js';
import { openSafetensors } from './safetensors.js';
import type { TensorSource } from './tensor-source.js';

export interface OpenCheckpoint {
  /** Absolute path of the checkpoint directory. */
  dir: string;
  config: CheckpointConfig;
  dims: ModelDims;
  /** Validated tensors; the caller closes them (`tensors.close()`). */
  tensors: TensorSource;
  /** Extra (unused) tensors and whether a tied lm_head was ignored. */
  report: CheckpointReport;
}

/**
 * Reads config.json, opens the safetensors (single or sharded) and checks that every tensor
 * the model needs is there with the right shape. What export/quantize/calibrate call first.
 */
export async function openCheckpoint(dir: string): Promise<OpenCheckpoint> {
  const root = resolve(dir);
  const config = await readCheckpointConfig(root);
  const dims = dimsFromConfig(config);
  const tensors = await openSafetensors(root);
  try {
    const report = validateCheckpoint(tensors, dims, root);
    return { dir: root, config, dims, tensors, report };
  } catch (err) {
    await tensors.close();
    throw err;
  }
}
