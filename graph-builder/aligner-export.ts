/**
 * The export path of a forced-aligner checkpoint (exportModel dispatches here when config.json says
 * thinker_config.model_type "qwen3_forced_aligner"): the aligner model directory of
 * model-dir/aligner.ts, written into the export's staging folder.
 *
 *   encoder.onnx + encoder_weights.data          buildEncoder at the aligner's shapes (same make-functions)
 *   aligner_decoder.onnx + aligner_weights.data  aligner-decoder.ts
 *   config.json                                  alignerOutputConfig (model_kind "forced_aligner")
 *
 * exportModel itself writes the tokenizer files and export-record.json, as for every layout.
 *
 * Usage (inside exportModel):
 *   if (ckpt.dims.aligner) await writeAlignerModelFiles(ckpt, tmp, { layout, attention, allLogits, progress });
 */
import { join } from 'node:path';
import type { OpenCheckpoint } from '../checkpoint/open-checkpoint.js';
import { writeFileAtomic } from '../common/atomic.js';
import { UserError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { alignerGraphFileName, alignerOutputConfig, alignerWeightsFileName } from '../model-dir/aligner.js';
import { CONFIG_FILE } from '../model-dir/files.js';
import { alignerDecoderTensorCount, buildAlignerDecoder } from './aligner-decoder.js';
import { buildEncoder } from './encoder.js';
import { writeModel } from './model.js';
import { WeightStore } from './weight-store.js';

export interface AlignerExportOptions {
  /** The export's --layout: only the split layout exists for the aligner. */
  layout?: string;
  /** The export's --attention: the aligner decoder is built from standard ops only. */
  attention?: string;
  /** The export's --all-logits: the aligner has no vocabulary logits. */
  allLogits?: boolean;
  progress?: Progress;
}

/** Refuses the export options that have no meaning for an aligner, naming the flag (before any graph work). */
export function checkAlignerExportOptions(o: AlignerExportOptions): void {
  const what = 'the checkpoint is a forced aligner';
  if ((o.layout ?? 'split') !== 'split') throw new UserError(`--layout ${o.layout}: ${what}, which is exported in its own directory layout (drop --layout)`);
  if ((o.attention ?? 'onnx') !== 'onnx') throw new UserError(`--attention ${o.attention}: ${what}, whose decoder uses standard ONNX attention (drop --attention)`);
  if (o.allLogits) throw new UserError(`--all-logits: ${what}, which has timestamp logits only (drop --all-logits)`);
}

export async function writeAlignerModelFiles(ckpt: OpenCheckpoint, dir: string, o: AlignerExportOptions = {}): Promise<void> {
  checkAlignerExportOptions(o);
  const progress = o.progress ?? silentProgress;
  await buildEncoder({ tensors: ckpt.tensors, dims: ckpt.dims, outputDir: dir, progress });
  await writeAlignerDecoder(ckpt, dir, progress);
  await writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(alignerOutputConfig(ckpt.config, ckpt.dims), null, 2)}\n`);
}

/** aligner_decoder.onnx + aligner_weights.data (the data file written first, both atomically). */
async function writeAlignerDecoder(ckpt: OpenCheckpoint, dir: string, progress: Progress): Promise<void> {
  const total = alignerDecoderTensorCount(ckpt.dims);
  let done = 0;
  const store = await WeightStore.create(join(dir, alignerWeightsFileName('aligner_decoder')), {
    onStored: () => { done += 1; progress.update('aligner decoder weights', done, total); },
  });
  try {
    const graph = await buildAlignerDecoder(ckpt.tensors, ckpt.dims, store);
    await store.commit();
    await writeModel(join(dir, alignerGraphFileName('aligner_decoder')), graph);
  } catch (err) {
    await store.abort();
    throw err;
  }
  progress.finish();
}
