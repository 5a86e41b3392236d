import { describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import {
  componentOfWeight, describeRecipe, embeddingSpecName, parseRecipeEntries, presetRecipe, recipeEmbedding, recipeSelector, resolveRecipe, sharesTable, specName,
} from './recipe.js';

const q4 = { precision: 'int4', blockSize: 64, accuracyLevel: 4, symmetric: false, clip: false } as const;

describe('quantisation recipes', () => {
  it('presets: decoders quantises decoder and lm_head; whole every component, the lookup sharing the lm_head table', () => {
    expect(presetRecipe('decoders')).toEqual({ preset: 'decoders', encoder: { precision: 'fp32' }, decoder: q4, embedding: { precision: 'fp32' }, lm_head: q4 });
    const whole = presetRecipe('whole');
    expect(whole).toEqual({ preset: 'whole', encoder: q4, decoder: q4, embedding: { ...q4, accuracyLevel: 0 }, lm_head: q4 });
    expect(sharesTable(whole, true)).toBe(true);
    expect(sharesTable(whole, false)).toBe(false);
    expect(describeRecipe(whole)).toBe('whole: encoder int4 b64 al4, decoder int4 b64 al4, embedding int4 b64, lm_head int4 b64 al4');
  });

  it('overrides change one component and make the recipe custom; an override equal to the preset keeps its name', () => {
    const r = resolveRecipe('whole', { encoder: 'int8,block=128,al=0', lm_head: 'int4,sym' });
    expect(r.preset).toBe('custom');
    expect(r.encoder).toEqual({ precision: 'int8', blockSize: 128, accuracyLevel: 0, symmetric: false, clip: false });
    expect(r.lm_head).toEqual({ ...q4, symmetric: true });
    expect(sharesTable(r, true)).toBe(false);
    expect(resolveRecipe('whole', { encoder: 'int4' }).preset).toBe('whole');
    // A float component of the preset turned on takes the base spec.
    expect(resolveRecipe('decoders', { encoder: 'int4,block=32' }).encoder).toEqual({ ...q4, blockSize: 32 });
    expect(resolveRecipe('decoders', { embedding: 'int4' }).embedding).toEqual({ ...q4, accuracyLevel: 0 });
    // --bits 8: the whole preset's lookup is int8 like its head, and still shares the table.
    const w8 = presetRecipe('whole', { bits: 8, blockSize: 64, accuracyLevel: 4, symmetric: false, clip: false });
    expect(w8.embedding).toEqual({ ...q4, precision: 'int8', accuracyLevel: 0 });
    expect(sharesTable(w8, true)).toBe(true);
    expect(recipeEmbedding(w8)?.params.bits).toBe(8);
    expect(sharesTable(resolveRecipe('whole', { embedding: 'int8' }), true)).toBe(false);
  });

  it('the clipping search: per component (,clip / ,noclip) or for the base spec; named in config.json and the summary; only a like-rounded head shares the table', () => {
    const r = resolveRecipe('whole', { decoder: 'int4,block=128,clip', embedding: 'int4,clip' });
    expect(r.decoder).toEqual({ ...q4, blockSize: 128, clip: true });
    expect(specName(r.decoder)).toBe('int4_rtn_block128_al4_clip');
    expect(embeddingSpecName(r.embedding)).toBe('int4_rtn_block64_clip_gather');
    expect(recipeEmbedding(r)?.params.clip).toBe(true);
    expect(sharesTable(r, true)).toBe(false);
    const base = presetRecipe('whole', { bits: 4, blockSize: 128, accuracyLevel: 4, symmetric: false, clip: true });
    expect(describeRecipe(base)).toBe('whole: encoder int4 b128 al4 clip, decoder int4 b128 al4 clip, embedding int4 b128 clip, lm_head int4 b128 al4 clip');
    expect(sharesTable(base, true)).toBe(true);
    expect(resolveRecipe('whole', { lm_head: 'int8,noclip' }, { bits: 4, blockSize: 64, accuracyLevel: 4, symmetric: false, clip: true }).lm_head).toEqual({ ...q4, precision: 'int8' });
    expect(() => resolveRecipe('whole', { encoder: 'fp32,clip' })).toThrow('--encoder fp32,clip: fp32 takes no block, accuracy level, symmetry or clipping');
  });

  const bad: [string, string, Record<string, string>, string][] = [
    ['an unknown component', 'whole', { vision: 'int4' }, '--recipe: unknown component "vision" (encoder, decoder, embedding, lm_head)'],
    ['bits 3', 'whole', { encoder: 'int3' }, '--encoder int3: precision must be fp32, int8 or int4, got "int3"'],
    ['block 0', 'whole', { lm_head: 'int4,block=0' }, '--lm-head int4,block=0: block must be a power of two from 16 to 256, got 0'],
    ['block 48', 'whole', { decoder: 'int4,block=48' }, '--decoder int4,block=48: block must be a power of two from 16 to 256, got 48'],
    ['accuracy level 5', 'whole', { encoder: 'int8,al=5' }, '--encoder int8,al=5: accuracy level must be 0..4, got 5'],
    ['settings on fp32', 'whole', { encoder: 'fp32,block=64' }, '--encoder fp32,block=64: fp32 takes no block, accuracy level, symmetry or clipping'],
    ['a float decoder', 'decoders', { decoder: 'fp32' }, '--decoder fp32: a quantised variant quantises the decoder (the float export is the fp32 variant)'],
  ];
  for (const [what, preset, overrides, message] of bad) {
    it(`refuses ${what} in one line`, () => {
      let err: unknown;
      try { resolveRecipe(preset as 'whole' | 'decoders', overrides); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toBe(message);
    });
  }

  it('parses --recipe entries and refuses one without =', () => {
    expect(parseRecipeEntries(['encoder=int8', 'lm_head=int4,block=32'])).toEqual({ encoder: 'int8', lm_head: 'int4,block=32' });
    expect(() => parseRecipeEntries(['encoder'])).toThrow(/^--recipe encoder: expected component=spec/);
  });

  it('maps checkpoint weight names to components, whatever graph they sit in', () => {
    expect(componentOfWeight('thinker.audio_tower.layers.3.fc1.weight')).toBe('encoder');
    expect(componentOfWeight('thinker.audio_tower.proj2.weight')).toBe('encoder');
    expect(componentOfWeight('thinker.model.layers.0.self_attn.q_proj.weight')).toBe('decoder');
    expect(componentOfWeight('thinker.model.embed_tokens.weight')).toBe('lm_head');
    expect(componentOfWeight('thinker.lm_head.weight')).toBe('lm_head');
    expect(componentOfWeight('something.else')).toBeNull();
    const select = recipeSelector(resolveRecipe('decoders', { lm_head: 'int8,al=0' }));
    const at = (weight: string) => select({ node: 'n', weight, K: 64, N: 64 });
    expect(at('thinker.audio_tower.conv_out.weight')).toBeNull();
    expect(at('thinker.model.layers.0.mlp.up_proj.weight')).toEqual({ bits: 4, blockSize: 64, symmetric: false, accuracyLevel: 4 });
    expect(at('thinker.model.embed_tokens.weight')).toEqual({ bits: 8, blockSize: 64, symmetric: false, accuracyLevel: 0 });
    expect(recipeEmbedding(presetRecipe('decoders'))).toBeNull();
    const e = recipeEmbedding(presetRecipe('whole'));
    expect(e?.params).toEqual({ bits: 4, blockSize: 64, symmetric: false });
    expect([e?.tables('thinker.model.embed_tokens.weight'), e?.tables('thinker.lm_head.weight')]).toEqual([true, false]);
  });
});
