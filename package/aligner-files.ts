import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { readSupportFiles } from '../checkpoint/support-files.js';
import { ALIGNER_GRAPHS, alignerGraphFileName, type AlignerGraphName } from '../model-dir/aligner.js';
import type { OutputConfig } from '../model-dir/config.js';
import { CONFIG_FILE, OPTIONAL_SUPPORT_FILES, settleModelDir } from '../model-dir/files.js';
import type { ModelCheckTarget } from './model-checks.js';
import { checkGraphWidths, type WidthRule } from './graph-widths.js';
import { checkExternalData } from './onnx-check.js';

/**
 * What package, verify-package and build need to know about a forced-aligner model directory
 * (model-dir/aligner.ts): which files a variant ships, the cheap content checks, the archive name
 * `qwen3-forcedaligner-<size>-<variant>.tar.gz`. The ASR code paths ask `config.model_kind` (or
 * modelDirKind) and come here for an aligner.
 */

export const ALIGNER_ARCHIVE_PREFIX = 'qwen3-forcedaligner-';

/**
 * The graph file a consumer asking for `variant` loads: `<graph>.<variant>.onnx`; the float
 * encoder serves a variant that quantised only the decoder (as in the split layout), the aligner
 * decoder never falls back.
 */
export async function alignerGraphFileFor(dir: string, graph: AlignerGraphName, variant: string): Promise<string> {
  if (!/^[a-z0-9]+$/.test(variant)) throw new UserError(`--variant must be like fp32 or int4, got "${variant}"`);
  const plain = alignerGraphFileName(graph);
  if (variant !== 'fp32') {
    const suffixed = alignerGraphFileName(graph, variant);
    if (await isFile(join(dir, suffixed))) return suffixed;
    if (graph !== 'encoder') throw new UserError(`${dir}: variant ${variant} has no ${suffixed} (run quantize first)`);
  }
  if (!(await isFile(join(dir, plain)))) throw new UserError(`${dir}: ${plain} is missing (not a forced-aligner model directory?)`);
  return plain;
}

/** Both graphs' files for `variant`, in run order (encoder, aligner_decoder). */
export async function alignerGraphFiles(dir: string, variant: string): Promise<string[]> {
  const out: string[] = [];
  for (const g of ALIGNER_GRAPHS) out.push(await alignerGraphFileFor(dir, g, variant));
  return out;
}

/** Every file the variant needs (graphs, their data files, config.json, the tokenizer), sorted. */
export async function alignerVariantFiles(modelDir: string, variant: string): Promise<string[]> {
  settleModelDir(modelDir);
  let listing: string[];
  try { listing = await readdir(modelDir); } catch { throw new UserError(`${modelDir}: not a model directory`); }
  const files = new Set<string>();
  for (const file of await alignerGraphFiles(modelDir, variant)) {
    files.add(file);
    for (const data of await checkExternalData(join(modelDir, file))) files.add(data);
  }
  if (!listing.includes(CONFIG_FILE)) throw new UserError(`${modelDir}: ${CONFIG_FILE} is missing`);
  files.add(CONFIG_FILE);
  for (const f of OPTIONAL_SUPPORT_FILES) if (listing.includes(f)) files.add(f);
  if (!listing.includes('tokenizer.json') && !(listing.includes('vocab.json') && listing.includes('merges.txt'))) {
    throw new UserError(`${modelDir}: no tokenizer (need tokenizer.json or vocab.json + merges.txt)`);
  }
  return [...files].sort();
}

/** Prompt tokens the aligner reads, by config.json field (shared/ALIGNER.md step 3). */
const ALIGNER_TOKENS = {
  audio_start_token_id: '<|audio_start|>', audio_end_token_id: '<|audio_end|>', audio_pad_token_id: '<|audio_pad|>',
} as const;

/**
 * config.json's aligner fields are there, the graphs' widths agree with it (encoder output
 * output_dim, aligner_decoder audio_features hidden_size, timestamp_logits classify_num), and the
 * tokenizer holds the prompt's tokens and `<timestamp>` at the ids config.json names.
 */
export async function checkAlignerContents(t: ModelCheckTarget, config: OutputConfig, configName: string): Promise<void> {
  const { timestamp_token_id: stamp, timestamp_segment_ms: segment, classify_num: classes } = config;
  for (const [field, value] of [['timestamp_token_id', stamp], ['timestamp_segment_ms', segment], ['classify_num', classes]] as const) {
    if (value === undefined) throw new UserError(`${configName}: ${field}: missing (model_kind "forced_aligner" needs it)`);
  }
  const widths: WidthRule<AlignerGraphName>[] = [
    { graph: 'encoder', kind: 'output', name: 'audio_features', value: config.encoder.output_dim, field: 'encoder.output_dim' },
    { graph: 'aligner_decoder', kind: 'input', name: 'audio_features', value: config.decoder.hidden_size, field: 'decoder.hidden_size' },
    { graph: 'aligner_decoder', kind: 'output', name: 'timestamp_logits', value: classes as number, field: 'classify_num' },
  ];
  // The aligner's exporter fixes all three widths: a symbolic one is a wrong file, not a choice.
  await checkGraphWidths(t, widths, (graph) => alignerGraphFileFor(t.dir, graph, t.variant), true);
  const s = config.special_tokens;
  const expectedTokens = [
    ...(Object.entries(ALIGNER_TOKENS) as [keyof typeof ALIGNER_TOKENS, string][])
      .map(([field, content]) => ({ id: s[field], content, what: `config.json special_tokens.${field}` })),
    { id: stamp as number, content: '<timestamp>', what: 'config.json timestamp_token_id' },
  ];
  await readSupportFiles(t.dir, { vocabSize: config.decoder.vocab_size, expectedTokens }).catch((err: unknown) => {
    throw err instanceof UserError ? new UserError(err.message.split(t.dir).join(t.display)) : err;
  });
}

async function isFile(path: string): Promise<boolean> {
  try { return (await stat(path)).isFile(); } catch { return false; }
}
