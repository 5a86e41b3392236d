import { resolve } from 'node:path';
import { UserError } from '../common/errors.js';
import { configField, dimsFromConfig, readCheckpointConfigWithFormat, type CheckpointConfig, type ModelDims } from './config.js';
import { validateCheckpoint, type CheckOptions, type CheckpointReport } from './expected-tensors.js';
import { HfTensorSource } from './renamed-source.js';
import { openSafetensors } from './safetensors.js';
import { formatOfName, storedName, type CheckpointFormat, type ModelKind } from './tensor-names.js';
import type { TensorSource } from './tensor-source.js';

export interface OpenCheckpoint {
  /** Absolute path of the checkpoint directory. */
  dir: string;
  /** Which of the two official layouts was read (found by config.json and the tensor names). */
  format: CheckpointFormat;
  /** config.json in the original (nested) shape, whichever format it was read from. */
  config: CheckpointConfig;
  dims: ModelDims;
  /** Validated tensors under their original names; the caller closes them (`tensors.close()`). */
  tensors: TensorSource;
  /** Extra (unused) tensors and whether a tied lm_head was ignored. */
  report: CheckpointReport;
}

/**
 * Reads config.json, opens the safetensors (single or sharded) and checks that every tensor
 * the model needs is there with the right shape. What export/quantize/calibrate call first.
 * Both official layouts load (the original `thinker.*` one and the transformers-native `-hf`
 * one); the tensors always come back under the original names.
 */
export async function openCheckpoint(dir: string): Promise<OpenCheckpoint> {
  const root = resolve(dir);
  const { format, config, file } = await readCheckpointConfigWithFormat(root);
  const dims = dimsFromConfig(config);
  const stored = await openSafetensors(root);
  try {
    checkTensorNamesMatch(stored, format, file, root);
    const tensors = format === 'hf' ? new HfTensorSource(stored, root) : stored;
    const report = validateCheckpoint(tensors, dims, root, checkOptionsFor(format, dims.aligner ? 'forced_aligner' : 'asr'));
    return { dir: root, format, config, dims, tensors, report };
  } catch (err) {
    await stored.close();
    throw err;
  }
}

/** Messages in the checkpoint's own terms: stored tensor names, config fields as spelled there. */
export function checkOptionsFor(format: CheckpointFormat, kind: ModelKind = 'asr'): CheckOptions {
  return {
    displayName: (name) => storedName(name, format, kind),
    layerField: {
      audio: configField(format, 'audio', 'encoder_layers'),
      text: configField(format, 'text', 'num_hidden_layers'),
    },
  };
}

/**
 * The tensors must be named in the layout config.json has: an -hf checkpoint with the original
 * nested config (or the other way round) is refused, naming the field and a tensor.
 */
export function checkTensorNamesMatch(source: TensorSource, format: CheckpointFormat, configFile: string, where: string): void {
  const other = source.list().find((t) => {
    const f = formatOfName(t.name);
    return f !== undefined && f !== format;
  });
  if (!other) return;
  if (format === 'original') {
    throw new UserError(
      `${configFile}: thinker_config: the original nested config, but tensor ${other.name} has an -hf name; an -hf checkpoint's config.json has audio_config and text_config at top level`);
  }
  throw new UserError(
    `${configFile}: text_config: the flat -hf config, but tensor ${other.name} has an original (thinker.*) name; an original checkpoint's config.json nests audio_config and text_config in thinker_config`);
}
