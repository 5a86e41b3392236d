import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { CONFIG_FILE, GRAPHS, graphFileName, weightsFileName, type GraphName } from './files.js';

/**
 * The two layouts a qwen3-onnx model directory can have, and the file names of the second one.
 *
 * - 'split' (shared/CONTRACT.md): encoder.onnx, decoder_init.onnx, decoder_step.onnx,
 *   embed_tokens.bin, the tokenizer files at the top (model-dir/files.ts names them).
 * - 'sherpa-onnx' (shared/SHERPA-ONNX.md): conv_frontend.onnx, encoder.onnx, decoder.onnx (one graph
 *   for prefill and steps, full-size cache buffers in, per-call deltas out) and a tokenizer/ folder.
 *
 * Both hold an encoder.onnx with different inputs, so one directory holds one layout; config.json's
 * `layout` says which (absent = split, the contract's config has no such key).
 */
export const LAYOUTS = ['split', 'sherpa-onnx'] as const;
export type Layout = (typeof LAYOUTS)[number];

/** The sherpa-onnx layout's graphs, in the order sherpa runs them. */
export const SHERPA_GRAPHS = ['conv_frontend', 'encoder', 'decoder'] as const;
export type SherpaGraphName = (typeof SHERPA_GRAPHS)[number];

/** `<graph>.onnx` for fp32, `<graph>.<variant>.onnx` for a quantised variant. */
export function sherpaGraphFileName(graph: SherpaGraphName, variant: string = 'fp32'): string {
  return variant === 'fp32' ? `${graph}.onnx` : `${graph}.${variant}.onnx`;
}

/** The external-data file a sherpa-layout graph points into: `<graph>.data`, `<graph>.<variant>.data`. */
export function sherpaWeightsFileName(graph: SherpaGraphName, variant: string = 'fp32'): string {
  return variant === 'fp32' ? `${graph}.data` : `${graph}.${variant}.data`;
}

/** The graphs a consumer of `layout` loads, in load order. */
/** A graph of either layout. */
export type AnyGraphName = GraphName | SherpaGraphName;

export function layoutGraphs(layout: Layout): readonly AnyGraphName[] {
  return layout === 'split' ? GRAPHS : SHERPA_GRAPHS;
}

/** Graphs whose float file serves a quantised variant that has none of its own (the rest must exist per variant). */
export function floatFallbackGraphs(layout: Layout): readonly AnyGraphName[] {
  return layout === 'split' ? ['encoder'] : ['conv_frontend', 'encoder'];
}

/** What an archive name says between the size label and the variant: `qwen3-asr-0.6b-sherpa-onnx-int4`. */
export function archiveLayoutTag(layout: Layout): string {
  return layout === 'split' ? '' : `${layout}-`;
}

/** The folder sherpa's `tokenizer` option points at, and what it reads there (tokenizer.json is not read). */
export const SHERPA_TOKENIZER_DIR = 'tokenizer';
export const SHERPA_TOKENIZER_FILES: readonly string[] = ['vocab.json', 'merges.txt', 'tokenizer_config.json'];

/** Names a sherpa-layout directory may hold besides config.json / export-record.json / the tokenizer folder. */
export const SHERPA_FILE_NAME = /^(conv_frontend|encoder|decoder)(\.[a-z0-9]+)?\.(onnx|data)$/;

export function isLayout(value: string): value is Layout {
  return (LAYOUTS as readonly string[]).includes(value);
}

export function parseLayout(value: string, flag = '--layout'): Layout {
  if (!isLayout(value)) throw new UserError(`${flag} ${value}: unknown layout (expected ${LAYOUTS.join(' or ')})`);
  return value;
}

/**
 * Which layout `dir` holds: config.json's `layout` when present, else the files (conv_frontend.onnx or
 * decoder.onnx means sherpa-onnx). A directory with neither layout's decoder is reported by the caller.
 */
export async function detectLayout(dir: string): Promise<Layout> {
  let text: string | undefined;
  try { text = await readFile(join(dir, CONFIG_FILE), 'utf8'); } catch { text = undefined; }
  if (text !== undefined) {
    let declared: unknown;
    try { declared = (JSON.parse(text) as { layout?: unknown }).layout; } catch { declared = undefined; }
    if (typeof declared === 'string') {
      if (!isLayout(declared)) throw new UserError(`${join(dir, CONFIG_FILE)}: unknown layout "${declared}" (expected ${LAYOUTS.join(' or ')})`);
      return declared;
    }
  }
  for (const name of [sherpaGraphFileName('conv_frontend'), sherpaGraphFileName('decoder')]) {
    if (await exists(join(dir, name))) return 'sherpa-onnx';
  }
  return 'split';
}

async function exists(path: string): Promise<boolean> {
  try { await stat(path); return true; } catch { return false; }
}

/** One graph a quantised variant rewrites: its float source and where the variant's copy goes. */
export interface VariantGraphFiles { graph: AnyGraphName; float: string; variant: (variant: string) => string }

/**
 * What `quantize` reads and writes in a directory of `layout`: the decoder graphs (sharing one data
 * file) and the encoder-side graphs (each with its own data file; quantised only when the recipe
 * quantises the encoder; the sherpa-onnx layout's conv_out lives in conv_frontend).
 */
export interface QuantizeFilePlan {
  decoders: VariantGraphFiles[];
  decoderData: (variant: string) => string;
  encoders: Array<VariantGraphFiles & { data: (variant: string) => string }>;
}

export function quantizeFilePlan(layout: Layout): QuantizeFilePlan {
  if (layout === 'split') {
    const g = (graph: GraphName): VariantGraphFiles => ({ graph, float: graphFileName(graph), variant: (v) => graphFileName(graph, v) });
    return {
      decoders: [g('decoder_init'), g('decoder_step')],
      decoderData: (v) => weightsFileName('decoder', v),
      encoders: [{ ...g('encoder'), data: (v) => weightsFileName('encoder', v) }],
    };
  }
  const s = (graph: SherpaGraphName): VariantGraphFiles => ({ graph, float: sherpaGraphFileName(graph), variant: (v) => sherpaGraphFileName(graph, v) });
  return {
    decoders: [s('decoder')],
    decoderData: (v) => sherpaWeightsFileName('decoder', v),
    encoders: (['conv_frontend', 'encoder'] as const).map((graph) => ({ ...s(graph), data: (v: string) => sherpaWeightsFileName(graph, v) })),
  };
}
