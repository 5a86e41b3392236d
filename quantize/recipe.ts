import { UserError } from '../common/errors.js';
import { AUDIO_TOWER } from '../graph-builder/encoder-frontend.js';
import { EMBED_TOKENS, LM_HEAD } from '../graph-builder/decoder.js';
import type { NBitsChoice, NBitsSelector } from './matmul-nbits.js';
import type { GatherQuantizeOptions } from './gather-block-quantized.js';

/**
 * A quantisation recipe: one choice per component of the model, named by what it is in the
 * checkpoint (so it applies to any graph whose initializers carry the checkpoint's names, split
 * or sherpa-onnx layout alike):
 *   encoder    every audio-tower linear (attention q/k/v/out, fc1, fc2, conv_out, proj1, proj2);
 *              the Conv2d stem is never a MatMul, so it stays float
 *   decoder    every text-model linear but the lm_head
 *   lm_head    the output projection (the embedding table itself when tied)
 *   embedding  the token lookup (Gather on the embedding table) -> GatherBlockQuantized
 * Each is fp32, or int4/int8 round-to-nearest with a block size, an accuracy level and
 * (a)symmetry. Presets: `decoders` (decoder + lm_head, encoder and lookup float; the recipe
 * quantize had before presets) and `whole` (every component int4; the lookup shares the lm_head's
 * table; int8 lookup and head with --bits 8). Per-component specs override a preset.
 */

export const COMPONENTS = ['encoder', 'decoder', 'embedding', 'lm_head'] as const;
export type Component = (typeof COMPONENTS)[number];

export const PRESETS = ['decoders', 'whole'] as const;
export type PresetName = (typeof PRESETS)[number];

/** `clip`: search each block's clipping range for the least error (quantize/rtn.ts) instead of MLAS's min/max. */
export interface QuantizedSpec { precision: 'int4' | 'int8'; blockSize: number; accuracyLevel: number; symmetric: boolean; clip: boolean }
export type ComponentSpec = { precision: 'fp32' } | QuantizedSpec;

export interface Recipe {
  /** The preset it started from; `custom` once any component differs from it. */
  preset: PresetName | 'custom';
  encoder: ComponentSpec;
  decoder: QuantizedSpec;
  embedding: ComponentSpec;
  lm_head: ComponentSpec;
}

/** What a preset's quantised components default to (the CLI's --bits/--block-size/... set these). */
export interface BaseSpec { bits: 4 | 8; blockSize: number; accuracyLevel: number; symmetric: boolean; clip: boolean }
export const BASE_DEFAULTS: BaseSpec = { bits: 4, blockSize: 64, accuracyLevel: 4, symmetric: false, clip: false };

export function presetRecipe(preset: PresetName, base: BaseSpec = BASE_DEFAULTS): Recipe {
  const q: QuantizedSpec = { precision: base.bits === 4 ? 'int4' : 'int8', blockSize: base.blockSize, accuracyLevel: base.accuracyLevel, symmetric: base.symmetric, clip: base.clip };
  const fp32: ComponentSpec = { precision: 'fp32' };
  if (preset === 'decoders') return { preset, encoder: fp32, decoder: q, embedding: fp32, lm_head: q };
  // The lookup rounds as the lm_head does, so with a tied head it reads the same table (no accuracy level: GatherBlockQuantized has none).
  return { preset, encoder: q, decoder: q, embedding: { ...q, accuracyLevel: 0 }, lm_head: q };
}

export function parsePreset(name: string): PresetName {
  if (!(PRESETS as readonly string[]).includes(name)) throw new UserError(`--preset: unknown preset "${name}" (${PRESETS.join(' or ')})`);
  return name as PresetName;
}

/**
 * Parses one component's spec: `fp32`, `int4` or `int8`, optionally followed by `,block=N`,
 * `,al=N` (accuracy level), `,sym` or `,asym`, `,clip` or `,noclip` (clipping search); unset fields come from `inherit` (the preset's
 * choice for that component, or the base spec). `flag` names the option in messages.
 */
export function parseComponentSpec(flag: string, text: string, inherit: QuantizedSpec): ComponentSpec {
  const [head, ...mods] = text.trim().split(',').map((s) => s.trim());
  const bad = (why: string): UserError => new UserError(`${flag} ${text}: ${why}`);
  if (head === 'fp32') {
    if (mods.length) throw bad('fp32 takes no block, accuracy level, symmetry or clipping');
    return { precision: 'fp32' };
  }
  if (head !== 'int4' && head !== 'int8') throw bad(`precision must be fp32, int8 or int4, got "${head}"`);
  const spec: QuantizedSpec = { ...inherit, precision: head };
  for (const m of mods) {
    const [key, value, extra] = m.split('=');
    if (key === 'sym' && value === undefined) spec.symmetric = true;
    else if (key === 'asym' && value === undefined) spec.symmetric = false;
    else if (key === 'clip' && value === undefined) spec.clip = true;
    else if (key === 'noclip' && value === undefined) spec.clip = false;
    else if ((key === 'block' || key === 'al') && value !== undefined && extra === undefined && /^-?\d+$/.test(value)) {
      if (key === 'block') spec.blockSize = Number(value); else spec.accuracyLevel = Number(value);
    } else throw bad(`unknown setting "${m}" (block=N, al=N, sym, asym, clip or noclip)`);
  }
  checkQuantizedSpec(flag, text, spec);
  return spec;
}

export function checkQuantizedSpec(flag: string, text: string, s: QuantizedSpec): void {
  // onnxruntime's MatMulNBits needs a power of two >= 16; its fast CPU kernels (MLAS) stop at 256.
  const b = s.blockSize;
  if (!Number.isInteger(b) || b < 16 || b > 256 || (b & (b - 1)) !== 0) throw new UserError(`${flag} ${text}: block must be a power of two from 16 to 256, got ${b}`);
  if (!Number.isInteger(s.accuracyLevel) || s.accuracyLevel < 0 || s.accuracyLevel > 4) throw new UserError(`${flag} ${text}: accuracy level must be 0..4, got ${s.accuracyLevel}`);
}

/**
 * The recipe of a preset with per-component overrides (`component -> spec`, as the CLI's
 * --encoder/--decoder/--embedding/--lm-head or --recipe component=spec give them).
 */
export function resolveRecipe(preset: PresetName, overrides: Readonly<Record<string, string>>, base: BaseSpec = BASE_DEFAULTS): Recipe {
  const recipe = presetRecipe(preset, base);
  const baseQ = presetRecipe('decoders', base).decoder;
  for (const [component, text] of Object.entries(overrides)) {
    if (!(COMPONENTS as readonly string[]).includes(component)) {
      throw new UserError(`--recipe: unknown component "${component}" (${COMPONENTS.join(', ')})`);
    }
    const c = component as Component;
    const flag = `--${c.replace('_', '-')}`;
    const current = recipe[c];
    const spec = parseComponentSpec(flag, text, current.precision === 'fp32' ? (c === 'embedding' ? { ...baseQ, accuracyLevel: 0 } : baseQ) : current);
    if (c === 'decoder') {
      if (spec.precision === 'fp32') throw new UserError(`${flag} ${text}: a quantised variant quantises the decoder (the float export is the fp32 variant)`);
      recipe.decoder = spec;
    } else recipe[c] = spec;
  }
  const plain = presetRecipe(preset, base);
  if (COMPONENTS.some((c) => JSON.stringify(recipe[c]) !== JSON.stringify(plain[c]))) recipe.preset = 'custom';
  return recipe;
}

/** `--recipe component=spec ...` as an override map (later entries win). */
export function parseRecipeEntries(entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of entries) {
    const at = entry.indexOf('=');
    if (at <= 0) throw new UserError(`--recipe ${entry}: expected component=spec, e.g. encoder=int8`);
    out[entry.slice(0, at).trim()] = entry.slice(at + 1);
  }
  return out;
}

/** The variant a recipe writes: named by its decoder's width (`int4` files for both presets). */
export function recipeVariant(r: Recipe): 'int4' | 'int8' {
  return r.decoder.precision;
}

/** A component's recipe as config.json states it: `fp32`, or e.g. `int4_rtn_block64_al4`. */
export function specName(s: ComponentSpec, awqAlpha?: number): string {
  if (s.precision === 'fp32') return 'fp32';
  return `${s.precision}${awqAlpha !== undefined ? `_awq${awqAlpha}` : ''}_rtn_block${s.blockSize}_al${s.accuracyLevel}${s.symmetric ? '_sym' : ''}${s.clip ? '_clip' : ''}`;
}

/** The lookup's name: no accuracy level (GatherBlockQuantized has none), `_gather` says which op. */
export function embeddingSpecName(s: ComponentSpec, awqAlpha?: number): string {
  if (s.precision === 'fp32') return 'fp32';
  return `${s.precision}${awqAlpha !== undefined ? `_awq${awqAlpha}` : ''}_rtn_block${s.blockSize}${s.symmetric ? '_sym' : ''}${s.clip ? '_clip' : ''}_gather`;
}

/** A one-line summary, e.g. `whole: encoder int4 b64 al4, decoder int4 b64 al4, embedding int4 b64, lm_head int4 b64 al4`. */
export function describeRecipe(r: Recipe): string {
  const one = (c: Component): string => {
    const s = r[c];
    if (s.precision === 'fp32') return `${c} fp32`;
    return `${c} ${s.precision} b${s.blockSize}${c === 'embedding' ? '' : ` al${s.accuracyLevel}`}${s.symmetric ? ' sym' : ''}${s.clip ? ' clip' : ''}`;
  };
  return `${r.preset}: ${COMPONENTS.map(one).join(', ')}`;
}

function choice(s: ComponentSpec): NBitsChoice {
  if (s.precision === 'fp32') return null;
  return { bits: s.precision === 'int4' ? 4 : 8, blockSize: s.blockSize, symmetric: s.symmetric, accuracyLevel: s.accuracyLevel, ...(s.clip ? { clip: true } : {}) };
}

/** Text-model weights: `thinker.model.*` and the lm_head (checkpoint names, as the graphs' initializers carry them). */
const LM_HEAD_WEIGHTS = new Set([LM_HEAD, EMBED_TOKENS]);

/** Which component a MatMul/Gemm weight belongs to, by its checkpoint name; null for none (left float). */
export function componentOfWeight(weight: string): Exclude<Component, 'embedding'> | null {
  if (LM_HEAD_WEIGHTS.has(weight)) return 'lm_head';
  if (weight.startsWith(`${AUDIO_TOWER}.`)) return 'encoder';
  if (weight.startsWith('thinker.model.')) return 'decoder';
  return null;
}

/** The MatMulNBits choice for each weight of any graph (encoder, decoders, sherpa-onnx's too). */
export function recipeSelector(r: Recipe): NBitsSelector {
  return ({ weight }) => {
    const c = componentOfWeight(weight);
    return c ? choice(r[c]) : null;
  };
}

/** The token-lookup rewrite of a recipe, or null when the lookup stays float. */
export function recipeEmbedding(r: Recipe, share?: GatherQuantizeOptions['share']): GatherQuantizeOptions | null {
  const e = r.embedding;
  if (e.precision === 'fp32') return null;
  return { params: { bits: e.precision === 'int4' ? 4 : 8, blockSize: e.blockSize, symmetric: e.symmetric, ...(e.clip ? { clip: true } : {}) }, tables: (name) => name === EMBED_TOKENS, ...(share ? { share } : {}) };
}

/**
 * Whether the lookup and the lm_head read one table: the lm_head is the tied embedding and both
 * round it the same way (the same weight task, matmul-nbits.ts).
 */
export function sharesTable(r: Recipe, tied: boolean): boolean {
  const e = r.embedding;
  const h = r.lm_head;
  return tied && e.precision !== 'fp32' && h.precision === e.precision && e.blockSize === h.blockSize && e.symmetric === h.symmetric && e.clip === h.clip;
}
