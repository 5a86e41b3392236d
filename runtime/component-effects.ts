import { access, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tempPathFor } from '../common/atomic.js';
import { trackTemp } from '../common/cleanup.js';
import { encodeModel, GraphIndex, loadModel, removeUnusedInitializers, type LoadedModel, type Node } from '../common/onnx/index.js';
import { EMBED_TOKENS } from '../graph-builder/decoder.js';
import { readModelConfig } from '../model-dir/config.js';
import { graphFileName } from '../model-dir/files.js';
import { detectLayout } from '../model-dir/layout.js';
import { UserError } from '../common/errors.js';
import { compareVariants, type CompareOptions, type CompareReport, type VariantComparison } from './compare.js';
import type { GraphSessionOptions, OpenGraph } from './graph-stage.js';
import { openOrtGraph } from './graph-stage.js';

/**
 * Each quantised component's effect on its own (split layout): the variant's graphs with every
 * other component put back to fp32, compared with fp32 like the variant itself (compare.ts):
 *   encoder alone     encoder.<v>.onnx + the float decoders
 *   embedding alone   the float decoders, decoder_init's token lookup taken from decoder_init.<v>.onnx
 *                     (its GatherBlockQuantized reads decoder_weights.<v>.data in place)
 *   decoders alone    the variant's decoders with decoder_init's lookup taken from the float
 *                     decoder_init (the float table read in place), the float encoder
 * Only the components the variant's recipe quantises are run; no weights are copied: a spliced
 * decoder_init is a small .onnx written as a temp file in the model directory (its initializers
 * point into the existing data files) and removed afterwards.
 */

export type ComponentAlone = 'encoder' | 'embedding' | 'decoders';

export interface ComponentEffect { component: ComponentAlone; comparison: VariantComparison }

export interface ComponentEffectsReport {
  variant: string;
  effects: ComponentEffect[];
}

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

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

/**
 * Runs compare once per quantised component of `variant`, each time with the variant's graph
 * files redirected to the mix above (the baseline is fp32). Thresholds are reported, not enforced:
 * the gate applies to the whole variant (compare / build).
 */
export async function compareComponentsAlone(
  opts: Omit<CompareOptions, 'variants' | 'openGraph'> & { variant: string },
): Promise<ComponentEffectsReport> {
  const dir = opts.modelDir;
  const v = opts.variant;
  if ((await detectLayout(dir)) !== 'split') throw new UserError(`--components: ${dir} is a sherpa-onnx layout directory; the per-component comparison reads the split layout's graphs`);
  const { config } = await readModelConfig(dir);
  const recipe = config.quantization ?? {};
  const key = (c: string): string => (v === 'int4' ? c : `${c}.${v}`);
  const file = (g: 'encoder' | 'decoder_init' | 'decoder_step', variant = 'fp32'): string => join(dir, graphFileName(g, variant));

  const effects: ComponentEffect[] = [];
  /** Graph file the variant would load -> the file run instead and whether it is pre-packed (quantised graphs are). */
  type Redirect = Map<string, { path: string; prepack: boolean }>;
  const toFloat = (g: 'encoder' | 'decoder_init' | 'decoder_step'): [string, { path: string; prepack: boolean }] => [file(g, v), { path: file(g), prepack: false }];
  const run = async (component: ComponentAlone, redirect: Redirect): Promise<void> => {
    const open: OpenGraph = (path: string, o: GraphSessionOptions) => {
      const to = redirect.get(path);
      return to ? openOrtGraph(to.path, { ...o, prepack: to.prepack }) : openOrtGraph(path, o);
    };
    const report: CompareReport = await compareVariants({ ...opts, variants: ['fp32', v], openGraph: open });
    const c = report.comparisons[0];
    effects.push({ component, comparison: { ...c, candidate: `${v} ${component} alone` } });
  };

  const ownEncoder = await exists(file('encoder', v));
  if (ownEncoder && recipe[key('encoder')] !== 'fp32') {
    await run('encoder', new Map([toFloat('decoder_init'), toFloat('decoder_step')]));
  }
  const embedding = recipe[key('embedding')];
  if (embedding !== undefined && embedding !== 'fp32') {
    const floatInit = await loadModel(file('decoder_init'));
    const output = lookupOutput(floatInit);
    const spliced = await writeSpliced(dir, spliceLookup(floatInit, await loadModel(file('decoder_init', v)), output));
    try {
      await run('embedding', new Map([toFloat('encoder'), [file('decoder_init', v), { path: spliced.path, prepack: false }], toFloat('decoder_step')]));
    } finally {
      await spliced.remove();
    }
    const quantInit = await loadModel(file('decoder_init', v));
    const back = await writeSpliced(dir, spliceLookup(quantInit, await loadModel(file('decoder_init')), output));
    try {
      await run('decoders', new Map([toFloat('encoder'), [file('decoder_init', v), { path: back.path, prepack: true }]]));
    } finally {
      await back.remove();
    }
  } else {
    // No quantised lookup: the variant's decoders as they are, beside the float encoder.
    await run('decoders', new Map(ownEncoder ? [toFloat('encoder')] : []));
  }
  return { variant: v, effects };
}
