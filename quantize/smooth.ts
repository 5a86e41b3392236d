import { dirname, resolve } from 'node:path';
import { UserError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { EMBED_TOKENS, LM_HEAD } from '../graph-builder/decoder.js';
import {
  DataType, ExternalDataWriter, GraphIndex, dimsOf, loadModel, markExternal, readFloat32s, removeUnusedInitializers,
  saveModel, sourceId, tensorBytes, uniqueName, viewBytes,
  type LoadedModel, type Placement, type Tensor, type TensorBytes,
} from '../common/onnx/index.js';
import { smoothingScales } from './awq-scales.js';
import { findSmoothingGroups, type SmoothingGroup } from './smoothing-groups.js';

/**
 * Writes AWQ-smoothed copies of float graphs that share one external-data file:
 *
 *   norm weight γ      ─► γ / s                   (new bytes, same initializer name)
 *   linear weight W    ─► W with input rows × s   (same name, or a new tensor when W is also
 *                                                  read elsewhere: the tied lm_head / embedding)
 *   everything else    ─► unchanged, still read from the original data file
 *
 * Only the rewritten tensors go into `dataFile`; the smoothed graphs keep pointing at the
 * original data file for the rest, so they must sit in the same directory as the originals
 * (onnxruntime refuses external data outside the model's directory). A tensor shared by both
 * graphs is written once. Weights stream through in row slabs (memory ~ one slab).
 */

export interface SmoothGraph {
  /** Float .onnx to read. */
  src: string;
  /** Smoothed .onnx to write (same directory as `src`). */
  dst: string;
}

export interface SmoothOptions {
  graphs: SmoothGraph[];
  /** Data file for the rewritten tensors (same directory as the graphs). */
  dataFile: string;
  /** Mean |activation| per channel, keyed by norm weight name (stats.json `norms`). */
  meanAbs: Readonly<Record<string, ArrayLike<number>>>;
  alpha: number;
  progress?: Progress;
}

export interface SmoothReport {
  alpha: number;
  /** Norms smoothed (distinct across graphs). */
  norms: number;
  /** Distinct linear weights rewritten. */
  linears: number;
  /** Weights that were also read by something else and got a smoothed copy: [original, copy]. */
  untied: [string, string][];
  /** Smallest and largest scale used. */
  scaleMin: number;
  scaleMax: number;
}

/** Rows per streamed slab are chosen to keep a slab near this size. */
const SLAB_BYTES = 4 << 20;

export async function writeSmoothedGraphs(opts: SmoothOptions): Promise<SmoothReport> {
  const progress = opts.progress ?? silentProgress;
  const dataFile = resolve(opts.dataFile);
  const dir = dirname(dataFile);
  for (const g of opts.graphs) {
    if (dirname(resolve(g.src)) !== dir || dirname(resolve(g.dst)) !== dir) {
      throw new UserError(`${g.dst}: smoothed graphs must sit beside their float graph and ${dataFile}`);
    }
    if (resolve(g.src) === resolve(g.dst)) throw new UserError(`${g.dst}: output would overwrite its input`);
  }

  const loaded: LoadedModel[] = [];
  for (const g of opts.graphs) loaded.push(await loadModel(g.src));
  const plan = planSmoothing(loaded, opts.meanAbs, opts.alpha);

  const data = await ExternalDataWriter.create(dataFile);
  try {
    // A tensor both graphs rewrite the same way (same source bytes, same scales) is written once.
    const placed = new Map<string, Placement>();
    const place = async (id: string, length: number, write: () => Promise<void>): Promise<Placement> => {
      let p = placed.get(id);
      if (!p) {
        const begun = await data.begin(length);
        await write();
        p = data.end(begun, `smoothing ${id}`);
        placed.set(id, p);
      }
      return p;
    };
    let done = 0;
    for (const [gi, m] of loaded.entries()) {
      const graph = m.graph;
      const inits = new Map(graph.initializer.map((t) => [t.name, t]));
      const initializer = (name: string): Tensor => {
        const t = inits.get(name);
        if (!t) throw new Error(`${m.path}: smoothing plan names initializer ${name}, which the graph lacks`);
        return t;
      };
      for (const g of plan.groups[gi]) {
        const s = plan.scales.get(g.key);
        if (!s) throw new Error(`no smoothing scales for ${g.key}`);
        const gamma = initializer(g.key);
        const src = tensorBytes(gamma, m.path);
        const p = await place(`norm|${sourceId(src)}|${g.key}`, 4 * g.channels, async () => {
          const values = await readFloat32s(src, 0, g.channels);
          for (let c = 0; c < g.channels; c++) values[c] = values[c] / s[c];
          await data.write(viewBytes(values));
        });
        markExternal(gamma, data.location, p);
        for (const lin of g.linears) {
          const w = initializer(lin.weight);
          const target = plan.rename.get(lin.weight) ?? lin.weight;
          const wsrc = tensorBytes(w, m.path);
          const dims = dimsOf(w);
          const pw = await place(`linear|${sourceId(wsrc)}|${g.key}|${lin.layout}`, 4 * dims[0] * dims[1], async () => {
            await scaleRows(wsrc, dims[0], dims[1], lin.layout, s, (chunk) => data.write(chunk));
          });
          if (target === lin.weight) markExternal(w, data.location, pw);
          else {
            if (!inits.has(target)) {
              const copy = markExternal({ name: target, dataType: DataType.FLOAT, dims }, data.location, pw);
              graph.initializer = [...graph.initializer, copy];
              inits.set(target, copy);
            }
            lin.weightRef.node.input[lin.weightRef.input] = target;
          }
          done += 1;
          progress.update('smoothing', done, plan.linearCount);
        }
      }
      // The embedding in decoder_step is read by nothing once lm_head has its own copy.
      removeUnusedInitializers(graph);
    }
    await data.commit();
  } catch (err) {
    await data.abort();
    throw err;
  }
  for (const [gi, m] of loaded.entries()) await saveModel(resolve(opts.graphs[gi].dst), m.model);
  progress.finish();

  let scaleMin = Infinity;
  let scaleMax = -Infinity;
  for (const s of plan.scales.values()) for (const v of s) { scaleMin = Math.min(scaleMin, v); scaleMax = Math.max(scaleMax, v); }
  return {
    alpha: opts.alpha,
    norms: plan.scales.size,
    linears: new Set(plan.groups.flat().flatMap((g) => g.linears.map((l) => l.weight))).size,
    untied: [...plan.rename.entries()].sort(),
    scaleMin,
    scaleMax,
  };
}

interface SmoothingPlan {
  /** Per graph, its groups (in graph order). */
  groups: SmoothingGroup[][];
  scales: Map<string, Float64Array>;
  /** Weight name -> name of its smoothed copy, for weights something else also reads. */
  rename: Map<string, string>;
  linearCount: number;
}

/**
 * Matches the graphs' norm groups with the statistics (both ways: a norm without statistics,
 * or statistics for a norm these graphs lack, means they describe another model) and decides
 * which weights need their own smoothed copy.
 */
export function planSmoothing(loaded: LoadedModel[], meanAbs: Readonly<Record<string, ArrayLike<number>>>, alpha: number): SmoothingPlan {
  const groups = loaded.map((m) => findSmoothingGroups(m).groups);
  const scales = new Map<string, Float64Array>();
  for (const [gi, list] of groups.entries()) {
    for (const g of list) {
      const a = meanAbs[g.key];
      if (!a) throw new UserError(`${loaded[gi].path}: no activation statistics for norm ${g.key}; the statistics describe another model`);
      if (a.length !== g.channels) throw new UserError(`activation statistics for ${g.key} have ${a.length} channels, the graph has ${g.channels}`);
      if (!scales.has(g.key)) scales.set(g.key, smoothingScales(a, alpha));
    }
  }
  for (const key of Object.keys(meanAbs).sort()) {
    if (!scales.has(key)) throw new UserError(`activation statistics name norm ${key}, which these graphs do not smooth; the statistics describe another model`);
  }

  // A weight is smoothed in place only when, in every graph, nothing but its group reads it.
  const groupOf = new Map<string, string>();
  let linearCount = 0;
  for (const [gi, list] of groups.entries()) {
    for (const g of list) {
      for (const lin of g.linears) {
        linearCount += 1;
        const owner = groupOf.get(lin.weight);
        if (owner !== undefined && owner !== g.key) throw new UserError(`${loaded[gi].path}: weight ${lin.weight} follows two norms (${owner}, ${g.key}); cannot smooth it for both`);
        groupOf.set(lin.weight, g.key);
      }
    }
  }
  const tied = new Set<string>();
  for (const [gi, list] of groups.entries()) {
    const idx = new GraphIndex(loaded[gi].graph, loaded[gi].path);
    const readers = new Map<string, Set<unknown>>();
    for (const lin of list.flatMap((g) => g.linears)) {
      const set = readers.get(lin.weight) ?? new Set<unknown>();
      set.add(lin.weightRef.node);
      readers.set(lin.weight, set);
    }
    for (const w of groupOf.keys()) {
      const mine = readers.get(w);
      if (idx.consumersOf(w).some((c) => !mine?.has(c))) tied.add(w);
    }
  }
  const used = new Set(loaded.flatMap((m) => m.graph.initializer.map((t) => t.name)));
  const rename = new Map<string, string>();
  for (const w of [...tied].sort()) {
    // The tied embedding's copy becomes the lm_head weight the exporter would have written.
    const name = w === EMBED_TOKENS && !used.has(LM_HEAD) ? LM_HEAD : uniqueName(used, `${w}.awq_smoothed`);
    used.add(name);
    rename.set(w, name);
  }
  return { groups, scales, rename, linearCount };
}





/**
 * Streams a [rows, cols] float32 weight with its input channels scaled by s:
 * KN ([K, N], x @ W): row k times s[k]; NK ([N, K], x @ W^T): element k of every row times s[k].
 */
async function scaleRows(
  src: TensorBytes, rows: number, cols: number, layout: 'KN' | 'NK', s: Float64Array,
  sink: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const perSlab = Math.max(1, Math.floor(SLAB_BYTES / (4 * cols)));
  for (let r0 = 0; r0 < rows; r0 += perSlab) {
    const n = Math.min(perSlab, rows - r0);
    const slab = await readFloat32s(src, r0 * cols, n * cols);
    for (let r = 0; r < n; r++) {
      const base = r * cols;
      if (layout === 'KN') {
        const f = s[r0 + r];
        for (let c = 0; c < cols; c++) slab[base + c] *= f;
      } else {
        for (let c = 0; c < cols; c++) slab[base + c] *= s[c];
      }
    }
    await sink(viewBytes(slab));
  }
}
