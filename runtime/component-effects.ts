import { rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tempPathFor } from '../common/atomic.js';
import { trackTemp } from '../common/cleanup.js';
import { encodeModel, GraphIndex, loadModel, removeUnusedInitializers, type LoadedModel, type Node } from '../common/onnx/index.js';
import { EMBED_TOKENS } from '../graph-builder/decoder.js';
import { readModelConfig } from '../model-dir/config.js';
import { graphFileName } from '../model-dir/files.js';
import { detectLayout } from '../model-dir/layout.js';
import { UserError } from '../common/errors.js';
import { compareVariants, type CompareOptions, type ExtraCandidate, type VariantComparison } from './compare.js';
import { resolveModelFiles, type ModelFiles } from './session.js';

/**
 * Each quantised component's effect on its own (split layout): the variant's graphs with every
 * other component put back to fp32, compared with fp32 like the variant itself (compare.ts):
 *   encoder alone     encoder.<v>.onnx + the float decoders
 *   embedding alone   the float decoders, decoder_init's token lookup taken from decoder_init.<v>.onnx
 *                     (its GatherBlockQuantized reads decoder_weights.<v>.data in place)
 *   decoders alone    the variant's decoders with decoder_init's lookup taken from the float
 *                     decoder_init (the float table read in place), the float encoder
 * All run on one fp32 baseline beside the variant (compare's `extraCandidates`). Only the
 * components the variant's recipe quantises are run; no weights are copied: a spliced
 * decoder_init is a small .onnx written as a temp file in the model directory (its initializers
 * point into the existing data files) and removed afterwards.
 */

export type ComponentAlone = 'encoder' | 'embedding' | 'decoders';

export interface ComponentEffect { component: ComponentAlone; comparison: VariantComparison }

export interface ComponentEffectsReport {
  variant: string;
  effects: ComponentEffect[];
}

/** The output a graph's token lookup writes: the float Gather on the embedding table's output. */
function lookupOutput(floatInit: LoadedModel): string {
  const g = floatInit.graph.node.find((n) => n.opType === 'Gather' && n.input[0] === EMBED_TOKENS);
  if (!g) throw new Error(`${floatInit.path}: no Gather on ${EMBED_TOKENS}`);
  return g.output[0];
}

/**
 * The nodes of `donor` that compute `output` from initializers and graph inputs only (its token
 * lookup: a Gather, or GatherBlockQuantized and its Slice), in graph order.
 */
function lookupNodes(donor: LoadedModel, output: string): Node[] {
  const idx = new GraphIndex(donor.graph, donor.path);
  const inputs = new Set(donor.graph.input.map((i) => i.name));
  const picked = new Set<Node>();
  const visit = (value: string): void => {
    if (idx.initializers.has(value) || inputs.has(value) || value === '') return;
    const p = idx.producer.get(value);
    if (!p) throw new Error(`${donor.path}: nothing produces ${value}`);
    if (picked.has(p)) return;
    picked.add(p);
    for (const i of p.input) visit(i);
  };
  visit(output);
  return donor.graph.node.filter((n) => picked.has(n));
}

/** `target` with its token lookup replaced by `donor`'s (the initializers it reads come along). */
export function spliceLookup(target: LoadedModel, donor: LoadedModel, output: string): LoadedModel {
  const take = lookupNodes(donor, output);
  const drop = lookupNodes(target, output);
  const names = new Set(take.flatMap((n) => n.input));
  const inits = donor.graph.initializer.filter((t) => names.has(t.name));
  const clash = inits.find((t) => target.graph.initializer.some((x) => x.name === t.name));
  if (clash) throw new Error(`${target.path}: already has an initializer ${clash.name}`);
  const at = target.graph.node.indexOf(drop[0]);
  const kept = target.graph.node.filter((n) => !drop.includes(n));
  kept.splice(at, 0, ...take);
  target.graph.node = kept;
  target.graph.initializer = [...target.graph.initializer, ...inits];
  for (const o of donor.model.opsetImport ?? []) {
    if (!(target.model.opsetImport ?? []).some((x) => (x.domain ?? '') === (o.domain ?? ''))) target.model.opsetImport = [...(target.model.opsetImport ?? []), o];
  }
  removeUnusedInitializers(target.graph);
  return target;
}

/** Writes a spliced graph as a temp file in the model directory; returns its path and its removal. */
async function writeSpliced(dir: string, model: LoadedModel): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = tempPathFor(join(dir, basename(model.path)));
  const untrack = trackTemp(path);
  await writeFile(path, encodeModel(model.model));
  return { path, remove: async () => { await rm(path, { force: true }); untrack(); } };
}

/** The candidates of `componentCandidates`, and the removal of the spliced graphs they read. */
export interface ComponentCandidates { candidates: (ExtraCandidate & { component: ComponentAlone })[]; cleanup: () => Promise<void> }

/**
 * One candidate per quantised component of `variant` (labels `<variant> <component> alone`), for
 * compare's `extraCandidates`: they run on the same fp32 baseline as the variant itself. Call
 * `cleanup` when done (it removes the spliced decoder_init files).
 */
export async function componentCandidates(dir: string, v: string): Promise<ComponentCandidates> {
  if ((await detectLayout(dir)) !== 'split') throw new UserError(`--components: ${dir} is a sherpa-onnx layout directory; the per-component comparison reads the split layout's graphs`);
  const { config } = await readModelConfig(dir);
  const recipe = config.quantization ?? {};
  const key = (c: string): string => (v === 'int4' ? c : `${c}.${v}`);
  const file = (g: 'encoder' | 'decoder_init' | 'decoder_step', variant = 'fp32'): string => join(dir, graphFileName(g, variant));
  const quant = await resolveModelFiles(dir, v);
  const float = await resolveModelFiles(dir, 'fp32');
  const removals: (() => Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => { for (const r of removals.splice(0)) await r(); };
  const candidates: ComponentCandidates['candidates'] = [];
  const add = (component: ComponentAlone, files: Partial<ModelFiles>, prepack: { encoder: boolean; decoder: boolean }): void => {
    candidates.push({ component, label: `${v} ${component} alone`, files: { ...float, ...files }, prepack });
  };
  try {
    const ownEncoder = quant.encoder === file('encoder', v) && recipe[key('encoder')] !== 'fp32';
    // Quantised graphs are pre-packed (as compare opens a variant's own graphs), float ones not.
    if (ownEncoder) add('encoder', { encoder: quant.encoder }, { encoder: true, decoder: false });
    const embedding = recipe[key('embedding')];
    if (embedding !== undefined && embedding !== 'fp32') {
      const floatInit = await loadModel(float.decoderInit);
      const output = lookupOutput(floatInit);
      const alone = await writeSpliced(dir, spliceLookup(floatInit, await loadModel(quant.decoderInit), output));
      removals.push(alone.remove);
      add('embedding', { decoderInit: alone.path }, { encoder: false, decoder: false });
      const back = await writeSpliced(dir, spliceLookup(await loadModel(quant.decoderInit), await loadModel(float.decoderInit), output));
      removals.push(back.remove);
      add('decoders', { decoderInit: back.path, decoderStep: quant.decoderStep }, { encoder: false, decoder: true });
    } else {
      // No quantised lookup: the variant's decoders as they are, beside the float encoder.
      add('decoders', { decoderInit: quant.decoderInit, decoderStep: quant.decoderStep }, { encoder: false, decoder: true });
    }
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { candidates, cleanup };
}

/** compare fp32 vs `variant` with each quantised component alone beside it; returns the components' comparisons. */
export async function compareComponentsAlone(
  opts: Omit<CompareOptions, 'variants' | 'extraCandidates'> & { variant: string },
): Promise<ComponentEffectsReport> {
  const { candidates, cleanup } = await componentCandidates(opts.modelDir, opts.variant);
  try {
    const report = await compareVariants({ ...opts, variants: ['fp32', opts.variant], extraCandidates: candidates });
    const extra = report.extraComparisons ?? [];
    return { variant: opts.variant, effects: candidates.map((c, i) => ({ component: c.component, comparison: extra[i] })) };
  } finally {
    await cleanup();
  }
}
