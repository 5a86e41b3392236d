import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckpointConfig, ModelDims } from '../checkpoint/config.js';
import { UserError, fsError } from '../common/errors.js';
import { outputConfig, type OutputConfig } from './config.js';
import { CONFIG_FILE, graphFileName } from './files.js';

/**
 * The forced-aligner model directory (/tmp/notes/INTERFACES.md, issue 16): which files it holds and
 * its config.json. Written by `export` when the checkpoint is Qwen3-ForcedAligner:
 *
 *   encoder.onnx + encoder_weights.data            the split layout's encoder at the aligner's shapes
 *   aligner_decoder.onnx + aligner_weights.data    input_ids, audio_features -> timestamp_logits, timestamp_classes
 *   <graph>.int4.onnx, <part>_weights.int4.data    what `quantize` adds (int8 likewise)
 *   config.json (model_kind "forced_aligner"), export-record.json, the tokenizer files
 *
 * No embed_tokens.bin: nothing outside the graph looks tokens up (config.json still states the
 * embedding's shape, the one inside aligner_decoder).
 */

export const MODEL_KINDS = ['asr', 'forced_aligner'] as const;
export type ModelDirKind = (typeof MODEL_KINDS)[number];

/** The aligner's graphs, in the order a consumer runs them. */
export const ALIGNER_GRAPHS = ['encoder', 'aligner_decoder'] as const;
export type AlignerGraphName = (typeof ALIGNER_GRAPHS)[number];

/** `<graph>.onnx` for fp32, `<graph>.<variant>.onnx` for a quantised variant. */
export function alignerGraphFileName(graph: AlignerGraphName, variant: string = 'fp32'): string {
  return graph === 'encoder' ? graphFileName('encoder', variant) : (variant === 'fp32' ? `${graph}.onnx` : `${graph}.${variant}.onnx`);
}

/** The external-data file of a graph: encoder_weights[.<variant>].data, aligner_weights[.<variant>].data. */
export function alignerWeightsFileName(graph: AlignerGraphName, variant: string = 'fp32'): string {
  const part = graph === 'encoder' ? 'encoder' : 'aligner';
  return variant === 'fp32' ? `${part}_weights.data` : `${part}_weights.${variant}.data`;
}

/** The aligner's fields of config.json (beside the usual encoder / decoder sections). */
export interface AlignerConfigFields {
  model_kind: 'forced_aligner';
  timestamp_token_id: number;
  timestamp_segment_ms: number;
  classify_num: number;
}

/** config.json of an aligner directory: the split layout's sections plus the aligner's fields. */
export function alignerOutputConfig(cfg: CheckpointConfig, dims: ModelDims): OutputConfig & AlignerConfigFields {
  const aligner = dims.aligner;
  if (!aligner) throw new Error('alignerOutputConfig: the checkpoint is not a forced aligner');
  return {
    // The embedding lives inside aligner_decoder.onnx, in float32.
    ...outputConfig(cfg, dims, 'float32'),
    model_kind: 'forced_aligner',
    timestamp_token_id: aligner.timestampTokenId,
    timestamp_segment_ms: aligner.segmentMs,
    classify_num: aligner.classifyNum,
  };
}

/**
 * What a model directory's config.json says it holds: 'forced_aligner' or 'asr' (no model_kind).
 * Reads only that key, so it works before (and whatever) the rest of the file is validated.
 */
export async function modelDirKind(dir: string): Promise<ModelDirKind> {
  const path = join(dir, CONFIG_FILE);
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) { throw fsError('cannot read', path, err); }
  let kind: unknown;
  try { kind = (JSON.parse(text) as { model_kind?: unknown }).model_kind; } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (kind === undefined) return 'asr';
  if (kind === 'asr' || kind === 'forced_aligner') return kind;
  throw new UserError(`${path}: model_kind: ${JSON.stringify(kind)} is not one of ${MODEL_KINDS.join(', ')}`);
}
