import { UserError } from '../common/errors.js';
import type { ModelDims } from './config.js';
import { FLOAT_DTYPES } from './safetensors.js';
import { AUDIO_PREFIX, EMBED_TOKENS, LM_HEAD, TEXT_PREFIX } from './tensor-names.js';
import type { TensorSource } from './tensor-source.js';

/**
 * The tensors a Qwen3-ASR checkpoint must hold, derived from the official modeling code
 * (QwenLM/Qwen3-ASR modeling_qwen3_asr.py):
 * - audio tower: Conv2d(1->C), Conv2d(C->C) x2 (weight [out,in,3,3] + bias), conv_out Linear with
 *   bias=False, encoder layers (q/k/v/out_proj with bias, LayerNorms with bias, fc1/fc2 with bias),
 *   ln_post, proj1, proj2 (with bias). The sinusoidal positional_embedding is a non-persistent
 *   buffer, so it is not in the checkpoint (the graph computes it).
 * - text model: Qwen3 decoder, attention_bias=False (no projection biases), RMSNorm weights only,
 *   q_norm/k_norm over head_dim, SwiGLU MLP without bias, final norm.
 * - lm_head: `thinker.lm_head.weight` only required when the embeddings are not tied; the forced
 *   aligner's is its timestamp head, [classify_num, hidden] (shared/ALIGNER.md), never tied.
 * nn.Linear weights are stored [out_features, in_features].
 */

export { AUDIO_PREFIX, EMBED_TOKENS, LM_HEAD, TEXT_PREFIX };

export function expectedTensors(dims: ModelDims): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const add = (name: string, shape: number[]) => out.set(name, shape);
  const linear = (name: string, outF: number, inF: number, bias: boolean) => {
    add(`${name}.weight`, [outF, inF]);
    if (bias) add(`${name}.bias`, [outF]);
  };
  const layerNorm = (name: string, n: number) => {
    add(`${name}.weight`, [n]);
    add(`${name}.bias`, [n]);
  };

  const a = dims.audio;
  const A = AUDIO_PREFIX;
  const C = a.downsampleHidden;
  add(`${A}conv2d1.weight`, [C, 1, 3, 3]);
  add(`${A}conv2d1.bias`, [C]);
  for (const conv of ['conv2d2', 'conv2d3']) {
    add(`${A}${conv}.weight`, [C, C, 3, 3]);
    add(`${A}${conv}.bias`, [C]);
  }
  linear(`${A}conv_out`, a.dModel, C * a.freqAfterConv, false);
  for (let i = 0; i < a.layers; i += 1) {
    const L = `${A}layers.${i}.`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${L}self_attn.${p}`, a.dModel, a.dModel, true);
    layerNorm(`${L}self_attn_layer_norm`, a.dModel);
    linear(`${L}fc1`, a.ffnDim, a.dModel, true);
    linear(`${L}fc2`, a.dModel, a.ffnDim, true);
    layerNorm(`${L}final_layer_norm`, a.dModel);
  }
  layerNorm(`${A}ln_post`, a.dModel);
  linear(`${A}proj1`, a.dModel, a.dModel, true);
  linear(`${A}proj2`, a.outputDim, a.dModel, true);

  const t = dims.text;
  const T = TEXT_PREFIX;
  add(EMBED_TOKENS, [t.vocab, t.hidden]);
  for (let i = 0; i < t.layers; i += 1) {
    const L = `${T}layers.${i}.`;
    add(`${L}input_layernorm.weight`, [t.hidden]);
    linear(`${L}self_attn.q_proj`, t.heads * t.headDim, t.hidden, false);
    linear(`${L}self_attn.k_proj`, t.kvHeads * t.headDim, t.hidden, false);
    linear(`${L}self_attn.v_proj`, t.kvHeads * t.headDim, t.hidden, false);
    linear(`${L}self_attn.o_proj`, t.hidden, t.heads * t.headDim, false);
    add(`${L}self_attn.q_norm.weight`, [t.headDim]);
    add(`${L}self_attn.k_norm.weight`, [t.headDim]);
    add(`${L}post_attention_layernorm.weight`, [t.hidden]);
    linear(`${L}mlp.gate_proj`, t.intermediate, t.hidden, false);
    linear(`${L}mlp.up_proj`, t.intermediate, t.hidden, false);
    linear(`${L}mlp.down_proj`, t.hidden, t.intermediate, false);
  }
  add(`${T}norm.weight`, [t.hidden]);
  if (!t.tied) add(LM_HEAD, [dims.aligner?.classifyNum ?? t.vocab, t.hidden]);
  return out;
}

/**
 * Tensors whose presence would change the arithmetic the graphs implement (biases the official
 * code does not have with this config). Ignoring them silently would produce a wrong model.
 */
const UNSUPPORTED_EXTRA = [
  /^thinker\.model\.layers\.\d+\.self_attn\.[qkvo]_proj\.bias$/,
  /^thinker\.model\.layers\.\d+\.mlp\.(gate|up|down)_proj\.bias$/,
  /^thinker\.audio_tower\.conv_out\.bias$/,
  /^thinker\.lm_head\.bias$/,
];

export interface CheckpointReport {
  /** Needed tensors present with the right shape and a float dtype. */
  matched: number;
  /** One line per problem (missing tensor, wrong shape, wrong dtype, unsupported extra). */
  problems: string[];
  /** Tensors the model does not use (tolerated), sorted. */
  extras: string[];
  /**
   * `thinker.lm_head.weight` present although tie_word_embeddings is true: it is ignored (the
   * tied model uses embed_tokens, as Hugging Face does when loading) but its shape is checked.
   */
  ignoredTiedLmHead: boolean;
}

const fmt = (s: readonly number[]) => `[${s.join(',')}]`;
const sameShape = (x: readonly number[], y: readonly number[]) => x.length === y.length && x.every((v, i) => v === y[i]);

export interface CheckOptions {
  /** How a (canonical) tensor name is shown in messages: the name the checkpoint stores. */
  displayName?: (name: string) => string;
  /** How a config field is named in messages (e.g. `thinker_config.text_config.num_hidden_layers`). */
  layerField?: { audio: string; text: string };
}

const LAYER_TOWERS = [
  { tower: 'audio', prefix: `${AUDIO_PREFIX}layers.`, what: 'encoder layer', probe: 'self_attn.q_proj.weight' },
  { tower: 'text', prefix: `${TEXT_PREFIX}layers.`, what: 'decoder layer', probe: 'input_layernorm.weight' },
] as const;

/**
 * Layer counts against the tensors present, before the expected-tensor list is built (a config
 * claiming 1e9 layers must fail at once, not after building a billion-entry list). Returns one
 * problem per tower whose config and tensors disagree, and the layer counts to check the
 * tensors with (never more than the checkpoint has).
 */
function checkLayerCounts(
  source: TensorSource, dims: ModelDims, opts: Required<CheckOptions>,
): { problems: string[]; checked: ModelDims } {
  const problems: string[] = [];
  const configured = { audio: dims.audio.layers, text: dims.text.layers };
  const checked = { audio: dims.audio.layers, text: dims.text.layers };
  for (const { tower, prefix, what, probe } of LAYER_TOWERS) {
    let highest = -1;
    // The first tensor (by name) of the lowest layer index past the configured count.
    let extra: { index: number; name: string } | undefined;
    const layers = configured[tower];
    for (const t of source.list()) {
      if (!t.name.startsWith(prefix)) continue;
      const index = Number(/^(\d+)\./.exec(t.name.slice(prefix.length))?.[1] ?? NaN);
      if (!Number.isInteger(index)) continue;
      highest = Math.max(highest, index);
      if (index >= layers && (extra === undefined || index < extra.index)) extra = { index, name: t.name };
    }
    if (extra) {
      problems.push(`tensor ${opts.displayName(extra.name)} belongs to ${what} ${extra.index}, but config.json ${opts.layerField[tower]} is ${layers} (the checkpoint has ${what}s up to ${highest})`);
    } else if (highest < layers - 1) {
      const missing = `${prefix}${highest + 1}.${probe}`;
      const has = highest < 0 ? `no ${what} tensors` : `${what}s 0..${highest} only`;
      problems.push(`config.json ${opts.layerField[tower]} is ${layers}, but the checkpoint has ${has} (tensor ${opts.displayName(missing)} is missing)`);
      checked[tower] = highest + 1;
    }
  }
  return {
    problems,
    checked: { ...dims, audio: { ...dims.audio, layers: checked.audio }, text: { ...dims.text, layers: checked.text } },
  };
}

/** Checks a tensor source against the model's needs; never throws for checkpoint problems. */
export function checkCheckpoint(source: TensorSource, dims: ModelDims, options: CheckOptions = {}): CheckpointReport {
  const opts: Required<CheckOptions> = {
    displayName: options.displayName ?? ((n) => n),
    layerField: options.layerField ?? { audio: 'encoder_layers', text: 'num_hidden_layers' },
  };
  const show = opts.displayName;
  const layers = checkLayerCounts(source, dims, opts);
  const expected = expectedTensors(layers.checked);
  const problems: string[] = [...layers.problems];
  let matched = 0;
  for (const [name, shape] of expected) {
    if (!source.has(name)) {
      problems.push(`tensor ${show(name)} is missing (expected shape ${fmt(shape)})`);
      continue;
    }
    const info = source.info(name);
    if (!sameShape(info.shape, shape)) {
      problems.push(`tensor ${show(name)}: expected shape ${fmt(shape)}, found ${fmt(info.shape)}`);
    } else if (!FLOAT_DTYPES.includes(info.dtype)) {
      problems.push(`tensor ${show(name)}: dtype ${info.dtype} is not a float type (${FLOAT_DTYPES.join('/')})`);
    } else {
      matched += 1;
    }
  }
  let ignoredTiedLmHead = false;
  if (dims.text.tied && source.has(LM_HEAD)) {
    const info = source.info(LM_HEAD);
    const shape = [dims.text.vocab, dims.text.hidden];
    if (!sameShape(info.shape, shape)) {
      problems.push(`tensor ${show(LM_HEAD)}: expected shape ${fmt(shape)} (tied to embed_tokens), found ${fmt(info.shape)}`);
    }
    ignoredTiedLmHead = true;
  }
  const extras: string[] = [];
  for (const t of source.list()) {
    if (expected.has(t.name) || t.name === LM_HEAD) continue;
    if (UNSUPPORTED_EXTRA.some((re) => re.test(t.name))) {
      problems.push(`tensor ${show(t.name)} is not supported (the official Qwen3-ASR model has no such parameter)`);
    } else {
      extras.push(show(t.name));
    }
  }
  return { matched, problems, extras, ignoredTiedLmHead };
}

/**
 * Throws a one-line UserError (naming `where`, the first problem and how many more) unless
 * every tensor the model needs is present, float and correctly shaped.
 */
export function validateCheckpoint(
  source: TensorSource, dims: ModelDims, where = 'checkpoint', options: CheckOptions = {},
): CheckpointReport {
  const report = checkCheckpoint(source, dims, options);
  if (report.problems.length) {
    const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more problems)` : '';
    throw new UserError(`${where}: ${report.problems[0]}${more}`);
  }
  return report;
}
