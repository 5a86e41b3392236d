import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCK_FILE } from '../common/dir-lock.js';
import { TEMP_NAME, sweepDeadRunDebris } from '../common/debris.js';
import { UserError, fsError } from '../common/errors.js';
import {
  SHERPA_FILE_NAME, SHERPA_TOKENIZER_DIR, SHERPA_TOKENIZER_FILES, floatFallbackGraphs, type Layout, type SherpaGraphName,
} from './layout.js';

/**
 * The files of a split-layout model directory (shared/CONTRACT.md) that qwen3-onnx writes, and the
 * rule for which graph file a variant loads. Every stage that needs to know whether a file in a
 * model directory is the tool's asks here.
 */

/** The graphs a consumer loads, in load order. */
export const GRAPHS = ['encoder', 'decoder_init', 'decoder_step'] as const;
export type GraphName = (typeof GRAPHS)[number];

/** The variants a model directory can hold: the float export and what `quantize --bits 4|8` adds. */
export const VARIANTS = ['fp32', 'int4', 'int8'] as const;
export type VariantName = (typeof VARIANTS)[number];

export const CONFIG_FILE = 'config.json';
export const EXPORT_RECORD = 'export-record.json';
export const EMBED_TOKENS_BIN = 'embed_tokens.bin';

/** Tokenizer, processor and template files export copies (or derives) from the checkpoint. */
export const TOKENIZER_AND_PROCESSOR_FILES: readonly string[] = [
  'added_tokens.json', 'chat_template.jinja', 'chat_template.json', 'generation_config.json', 'merges.txt',
  'preprocessor_config.json', 'processor_config.json', 'special_tokens_map.json', 'tokenizer.json',
  'tokenizer_config.json', 'vocab.json',
];

/** `<graph>.onnx` for fp32, `<graph>.<variant>.onnx` for a quantised variant. */
export function graphFileName(graph: GraphName, variant: string = 'fp32'): string {
  return variant === 'fp32' ? `${graph}.onnx` : `${graph}.${variant}.onnx`;
}

/** The external-data file the encoder's or the two decoders' graphs of a variant point into. */
export function weightsFileName(part: 'encoder' | 'decoder', variant: string = 'fp32'): string {
  return variant === 'fp32' ? `${part}_weights.data` : `${part}_weights.${variant}.data`;
}

/** Files a variant's archive carries besides its graphs and their weights: always the first two, the rest when present. */
export const REQUIRED_SUPPORT_FILES: readonly string[] = [CONFIG_FILE, EMBED_TOKENS_BIN];
export const OPTIONAL_SUPPORT_FILES: readonly string[] = [
  'vocab.json', 'merges.txt', 'tokenizer_config.json', 'tokenizer.json',
  'preprocessor_config.json', 'chat_template.json', 'generation_config.json',
];

const FIXED_NAMES = new Set<string>([
  CONFIG_FILE, EXPORT_RECORD, EMBED_TOKENS_BIN, LOCK_FILE,
  ...GRAPHS.map((g) => graphFileName(g)), weightsFileName('encoder'), weightsFileName('decoder'),
  ...TOKENIZER_AND_PROCESSOR_FILES,
]);
/** Quantised variants beside the float files: `<graph>.<variant>.onnx`, `<part>_weights.<variant>.data`. */
const VARIANT_NAME = /^((encoder|decoder_init|decoder_step)\.[a-z0-9]+\.onnx|(encoder|decoder)_weights\.[a-z0-9]+\.data)$/;

/** Whether `name` is a file qwen3-onnx writes into a model directory (or one of its temp/lock files). */
/** A forced-aligner directory's own graph and weights (model-dir/aligner.ts). */
const ALIGNER_NAME = /^(aligner_decoder(\.[a-z0-9]+)?\.onnx|aligner_weights(\.[a-z0-9]+)?\.data)$/;

export function isToolFile(name: string): boolean {
  return FIXED_NAMES.has(name) || VARIANT_NAME.test(name) || TEMP_NAME.test(name) || SHERPA_FILE_NAME.test(name) || ALIGNER_NAME.test(name);
}

/** Whether `name` in a model directory is a folder qwen3-onnx writes (the sherpa-onnx layout's tokenizer/). */
async function isToolFolder(dir: string, name: string): Promise<boolean> {
  if (TEMP_NAME.test(name)) return true;
  if (name !== SHERPA_TOKENIZER_DIR) return false;
  let inside: string[];
  try { inside = await readdir(join(dir, name)); } catch { return false; }
  return inside.every((n) => SHERPA_TOKENIZER_FILES.includes(n) || TEMP_NAME.test(n));
}

/**
 * Refuses to replace `dir` unless qwen3-onnx wrote it: it must hold export-record.json (the mark
 * every export leaves) and nothing the tool does not write. `flag` names the option at fault.
 */
export async function assertToolWrittenDir(dir: string, flag: string): Promise<void> {
  let names: string[];
  try { names = (await readdir(dir)).sort(); } catch (err) { throw fsError('cannot read', dir, err); }
  if (names.length === 0) return;
  if (!names.includes(EXPORT_RECORD)) {
    throw new UserError(`${flag} ${dir}: not a model directory written by qwen3-onnx (no ${EXPORT_RECORD}); refusing to replace it`);
  }
  for (const name of names) {
    const s = await stat(join(dir, name));
    if (s.isDirectory() ? !(await isToolFolder(dir, name)) : !isToolFile(name)) {
      throw new UserError(`${flag} ${dir}: holds ${name}, which qwen3-onnx did not write; refusing to replace the directory (move it away first)`);
    }
  }
}

/**
 * Settles what dead runs left in a model directory before it is read (a quantize killed after
 * staging its files is rolled forward, half-written temp files removed; common/debris.ts).
 */
export function settleModelDir(dir: string): void {
  sweepDeadRunDebris(dir);
}

async function isFile(path: string): Promise<boolean> {
  try { return (await stat(path)).isFile(); } catch { return false; }
}

/**
 * The graph file (name inside `dir`) a consumer asking for `variant` loads. fp32: `<graph>.onnx`.
 * Another variant: `<graph>.<variant>.onnx`; a float graph serves every variant only where the
 * layout says so (floatFallbackGraphs: the split contract's encoder; the sherpa-onnx layout's conv
 * front end and encoder). An absent decoder of the variant is an error naming the missing file,
 * never a silent fall back to float.
 */
export async function graphFileFor(dir: string, graph: GraphName | SherpaGraphName, variant: string, layout: Layout = 'split'): Promise<string> {
  if (!/^[a-z0-9]+$/.test(variant)) throw new UserError(`--variant must be like fp32 or int4, got "${variant}"`);
  const plain = `${graph}.onnx`;
  if (variant !== 'fp32') {
    const suffixed = `${graph}.${variant}.onnx`;
    if (await isFile(join(dir, suffixed))) return suffixed;
    if (!floatFallbackGraphs(layout).includes(graph)) throw new UserError(`${dir}: variant ${variant} has no ${suffixed} (run quantize first)`);
  }
  if (!(await isFile(join(dir, plain)))) throw new UserError(`${dir}: ${plain} is missing (not a qwen3-onnx model directory?)`);
  return plain;
}
