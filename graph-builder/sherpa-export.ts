/**
 * The sherpa-onnx layout's files (shared/SHERPA-ONNX.md) for `export --layout sherpa-onnx`:
 * conv_frontend.onnx, encoder.onnx, decoder.onnx, each with its weights in an external-data file
 * beside it (conv_frontend.data, encoder.data, decoder.data: a 1.7B decoder is far past protobuf's
 * 2 GB), the tokenizer/ folder sherpa reads, and config.json with `"layout": "sherpa-onnx"`.
 * exportModel (export.ts) stages the directory and writes the export record.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic.js';
import { silentProgress, type Progress } from '../common/progress.js';
import type { CheckpointConfig, ModelDims } from '../checkpoint/config.js';
import type { SupportFile } from '../checkpoint/support-files.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { outputConfig, type OutputConfig } from '../model-dir/config.js';
import {
  SHERPA_TOKENIZER_DIR, SHERPA_TOKENIZER_FILES, sherpaGraphFileName, sherpaWeightsFileName, type SherpaGraphName,
} from '../model-dir/layout.js';
import type { GraphBuilder } from './graph-builder.js';
import { writeModel } from './model.js';
import { buildConvFrontendGraph, buildSherpaDecoderGraph, buildSherpaEncoderGraph } from './sherpa-graphs.js';
import { WeightStore } from './weight-store.js';
import { UserError } from '../common/errors.js';

type GraphMaker = (src: TensorSource, dims: ModelDims, store: WeightStore) => Promise<GraphBuilder>;

const MAKERS: ReadonlyArray<[SherpaGraphName, GraphMaker]> = [
  ['conv_frontend', buildConvFrontendGraph],
  ['encoder', buildSherpaEncoderGraph],
  ['decoder', buildSherpaDecoderGraph],
];

/** The three graphs and their data files, one graph at a time (each weight streamed once). */
export async function writeSherpaGraphs(src: TensorSource, dims: ModelDims, dir: string, progress: Progress = silentProgress): Promise<void> {
  for (const [graph, make] of MAKERS) {
    let stored = 0;
    const store = await WeightStore.create(join(dir, sherpaWeightsFileName(graph)), {
      onStored: () => { stored += 1; progress.update(`${graph} weights`, stored, stored); },
    });
    try {
      const b = await make(src, dims, store);
      await store.commit();
      await writeModel(join(dir, sherpaGraphFileName(graph)), b);
    } catch (err) {
      await store.abort();
      throw err;
    }
  }
  progress.finish();
}

/** tokenizer/ with the checkpoint's vocab.json, merges.txt and tokenizer_config.json, unchanged. */
export async function writeSherpaTokenizer(files: readonly SupportFile[], dir: string): Promise<void> {
  const to = join(dir, SHERPA_TOKENIZER_DIR);
  await mkdir(to);
  for (const name of SHERPA_TOKENIZER_FILES) {
    const f = files.find((s) => s.name === name);
    if (!f) throw new UserError(`checkpoint has no ${name}: the sherpa-onnx layout's tokenizer/ needs vocab.json, merges.txt and tokenizer_config.json`);
    await writeFileAtomic(join(to, name), f.bytes);
  }
}

/**
 * config.json of a sherpa-layout directory: the contract's fields (the embedding described is the
 * float32 table inside decoder.onnx) plus `layout`, so every later stage knows the layout.
 */
export function sherpaConfig(cfg: CheckpointConfig, dims: ModelDims): OutputConfig {
  return { ...outputConfig(cfg, dims, 'float32'), layout: 'sherpa-onnx' };
}
