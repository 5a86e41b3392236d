import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError, fsError } from '../common/errors.js';
import { toNumber, type LoadedModel } from '../common/onnx/index.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { OutputConfigSchema, type OutputConfig } from '../model-dir/config.js';
import { readSupportFiles } from '../checkpoint/support-files.js';
import { graphFileFor } from './variant-files.js';
import { checkGraphWidths, type WidthRule } from './graph-widths.js';
import { checkAlignerContents } from './aligner-files.js';
import { CONFIG_FILE, EMBED_TOKENS_BIN } from '../model-dir/files.js';
import { SHERPA_TOKENIZER_DIR, type AnyGraphName, type Layout } from '../model-dir/layout.js';

/**
 * The cheap checks a model directory (or an archive's extracted small files) must pass before
 * anything slow runs: config.json parses and agrees with itself, with embed_tokens.bin's size and
 * with the graphs' input and output widths; the tokenizer files parse and hold the special tokens
 * at the ids config.json names. Errors are one line naming the file and the field.
 */
export interface ModelCheckTarget {
  /** Folder holding config.json, the tokenizer files and the variant's .onnx graphs. */
  dir: string;
  /** How `dir` is named in errors (the model directory, or `<archive>/<top>` for an archive). */
  display: string;
  variant: string;
  /** Size of a file of the model; by default its size in `dir` (an archive passes its member sizes). */
  sizeOf?: (name: string) => number | undefined;
}

const DTYPE_BYTES = { float16: 2, float32: 4 } as const;

/** Special tokens whose text is fixed by the Qwen3-ASR prompt format (CONTRACT.md). */
const NAMED_SPECIAL_TOKENS = {
  im_start_token_id: '<|im_start|>',
  im_end_token_id: '<|im_end|>',
  audio_start_token_id: '<|audio_start|>',
  audio_end_token_id: '<|audio_end|>',
  audio_pad_token_id: '<|audio_pad|>',
  asr_text_token_id: '<asr_text>',
} as const;

export async function checkModelContents(t: ModelCheckTarget): Promise<OutputConfig> {
  const configName = `${t.display}/config.json`;
  let text: string;
  try { text = await readFile(join(t.dir, CONFIG_FILE), 'utf8'); } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? new UserError(`${configName}: missing`) : fsError('cannot read', configName, err);
  }
  const config = parseJsonWith(OutputConfigSchema, text, configName);
  checkConfigFields(config, configName);
  if (config.model_kind === 'forced_aligner') {
    // The embedding lives inside aligner_decoder.onnx (package/aligner-files.ts).
    await checkAlignerContents(t, config, configName);
    return config;
  }
  if ((config.layout ?? 'split') === 'sherpa-onnx') {
    // The embedding lives inside decoder.onnx; the tokenizer in tokenizer/.
    await checkLayoutWidths(t, config, SHERPA_WIDTHS(config), 'sherpa-onnx');
    await checkTokenizer({ ...t, dir: join(t.dir, SHERPA_TOKENIZER_DIR), display: `${t.display}/${SHERPA_TOKENIZER_DIR}` }, config);
    return config;
  }
  await checkEmbedTable(t, config);
  await checkLayoutWidths(t, config, SPLIT_WIDTHS(config), 'split');
  await checkTokenizer(t, config);
  return config;
}

function checkConfigFields(config: OutputConfig, configName: string): void {
  const d = config.decoder;
  const [rows, cols] = config.embed_tokens_shape;
  const shape = `embed_tokens_shape [${rows}, ${cols}]`;
  if (d.vocab_size !== rows) throw new UserError(`${configName}: decoder.vocab_size ${d.vocab_size} disagrees with ${shape}`);
  if (d.hidden_size !== cols) throw new UserError(`${configName}: decoder.hidden_size ${d.hidden_size} disagrees with ${shape}`);
  const ids: [string, number][] = [
    ...Object.entries(config.special_tokens).filter((e): e is [string, number] => typeof e[1] === 'number'),
    ...config.special_tokens.eos_token_ids.map((id, i): [string, number] => [`eos_token_ids[${i}]`, id]),
  ];
  for (const [field, id] of ids) {
    if (id < 0 || id >= d.vocab_size) throw new UserError(`${configName}: special_tokens.${field} ${id} is outside the vocabulary (decoder.vocab_size ${d.vocab_size})`);
  }
}

async function sizeIn(t: ModelCheckTarget, name: string): Promise<number | undefined> {
  if (t.sizeOf) return t.sizeOf(name);
  try { return (await stat(join(t.dir, name))).size; } catch { return undefined; }
}

async function checkEmbedTable(t: ModelCheckTarget, config: OutputConfig): Promise<void> {
  const size = await sizeIn(t, EMBED_TOKENS_BIN);
  const file = `${t.display}/embed_tokens.bin`;
  if (size === undefined) throw new UserError(`${file}: missing`);
  const [rows, cols] = config.embed_tokens_shape;
  const want = rows * cols * DTYPE_BYTES[config.embed_tokens_dtype];
  if (size !== want) {
    throw new UserError(`${file}: ${size} bytes, but config.json embed_tokens_shape [${rows}, ${cols}] of ${config.embed_tokens_dtype} needs ${want}`);
  }
}

type Rule = WidthRule<AnyGraphName>;

const SPLIT_WIDTHS = (config: OutputConfig): Rule[] => [
  { graph: 'encoder', kind: 'output', name: 'audio_features', value: config.encoder.output_dim, field: 'encoder.output_dim' },
  { graph: 'decoder_init', kind: 'input', name: 'audio_features', value: config.decoder.hidden_size, field: 'decoder.hidden_size' },
  { graph: 'decoder_init', kind: 'output', name: 'logits', value: config.decoder.vocab_size, field: 'decoder.vocab_size' },
  { graph: 'decoder_step', kind: 'input', name: 'input_embeds', value: config.decoder.hidden_size, field: 'decoder.hidden_size' },
  { graph: 'decoder_step', kind: 'output', name: 'logits', value: config.decoder.vocab_size, field: 'decoder.vocab_size' },
];

const SHERPA_WIDTHS = (config: OutputConfig): Rule[] => [
  { graph: 'conv_frontend', kind: 'output', name: 'conv_output', value: config.encoder.hidden_size, field: 'encoder.hidden_size' },
  { graph: 'encoder', kind: 'input', name: 'conv_output', value: config.encoder.hidden_size, field: 'encoder.hidden_size' },
  { graph: 'encoder', kind: 'output', name: 'audio_features', value: config.encoder.output_dim, field: 'encoder.output_dim' },
  { graph: 'decoder', kind: 'input', name: 'audio_features', value: config.decoder.hidden_size, field: 'decoder.hidden_size' },
  { graph: 'decoder', kind: 'output', name: 'logits', value: config.decoder.vocab_size, field: 'decoder.vocab_size' },
];

async function checkLayoutWidths(t: ModelCheckTarget, config: OutputConfig, want: Rule[], layout: Layout): Promise<void> {
  // A symbolic width is the graph's business (onnxruntime checks it at run time); a fixed one must agree.
  const loaded = await checkGraphWidths(t, want, (graph) => graphFileFor(t.dir, graph, t.variant, layout), false);
  if (layout === 'sherpa-onnx') {
    const dec = loaded.get('decoder');
    if (dec) checkSherpaDecoderInputs(t, config, dec.file, dec.model);
  }
}

/** sherpa binds the decoder's inputs by position and sizes its caches from them: 4 + 2 * layers inputs, static kv heads and head_dim. */
function checkSherpaDecoderInputs(t: ModelCheckTarget, config: OutputConfig, file: string, model: LoadedModel): void {
  const inputs = model.model.graph?.input ?? [];
  const d = config.decoder;
  const want = 4 + 2 * d.num_layers;
  if (inputs.length !== want) {
    throw new UserError(`${t.display}/${file}: ${inputs.length} inputs, but config.json decoder.num_layers ${d.num_layers} needs ${want} (4 + a key and a value cache per layer)`);
  }
  for (let i = 4; i < inputs.length; i++) {
    const dims = inputs[i].type?.tensorType?.shape?.dim ?? [];
    const fixed = (k: number): number | null => (dims[k]?.dimValue == null ? null : toNumber(dims[k].dimValue as number));
    if (dims.length !== 4 || fixed(2) !== d.num_key_value_heads || fixed(3) !== d.head_dim) {
      throw new UserError(`${t.display}/${file}: cache input ${inputs[i].name} must be [1, T, ${d.num_key_value_heads}, ${d.head_dim}] with static kv heads and head_dim`);
    }
  }
}

/**
 * The tokenizer files parse (every form shipped: vocab.json + merges.txt with tokenizer_config.json,
 * tokenizer.json), stay inside the embedding table and hold the prompt's special tokens at the ids
 * config.json names: the same checks export makes on a checkpoint (checkpoint/support-files.ts).
 */
async function checkTokenizer(t: ModelCheckTarget, config: OutputConfig): Promise<void> {
  const s = config.special_tokens;
  const expectedTokens = (Object.entries(NAMED_SPECIAL_TOKENS) as [keyof typeof NAMED_SPECIAL_TOKENS, string][])
    .map(([field, content]) => ({ id: s[field], content, what: `config.json special_tokens.${field}` }));
  await readSupportFiles(t.dir, { vocabSize: config.decoder.vocab_size, expectedTokens }).catch((err: unknown) => {
    throw err instanceof UserError ? new UserError(err.message.split(t.dir).join(t.display)) : err;
  });
}
