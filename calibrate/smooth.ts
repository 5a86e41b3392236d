import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { AtomicFileWriter, writeFileAtomic } from '../common/atomic.js';
import { UserError, fsError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { EMBED_TOKENS, LM_HEAD } from '../graph-builder/decoder.js';
import { GraphIndex } from '../quantize/graph-index.js';
import {
  DataType, dimsOf, encodeModel, loadModel, tensorBytes,
  type LoadedModel, type TensorBytes, type TensorProto,
} from '../common/onnx-model.js';
import { setExternal } from '../quantize/weights-file.js';
import { smoothingScales } from './scales.js';
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
const ALIGN_LARGE = 4096;

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

  const writer = await AtomicFileWriter.create(dataFile);
  try {
    const placed = new Map<string, { offset: number; length: number }>();
    const place = async (id: string, length: number, write: () => Promise<void>): Promise<{ offset: number; length: number }> => {
      let p = placed.get(id);
      if (!p) {
        await writer.align(length >= 64 * 1024 ? ALIGN_LARGE : 64);
        const offset = writer.position;
        await write();
        if (writer.position - offset !== length) throw new Error(`smoothing ${id}: wrote ${writer.position - offset} bytes, expected ${length}`);
        p = { offset, length };
        placed.set(id, p);
      }
      return p;
    };
    const location = basename(dataFile);
    let done = 0;
    for (const [gi, m] of loaded.entries()) {
      const graph = m.model.graph!;
      const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
      for (const g of plan.groups[gi]) {
        const s = plan.scales.get(g.key)!;
        const gamma = inits.get(g.key)!;
        const src = tensorBytes(gamma, m.path);
        const p = await place(`norm|${sourceId(src)}|${g.key}`, 4 * g.channels, async () => {
          const values = await readF32(src, 0, g.channels);
          for (let c = 0; c < g.channels; c++) values[c] = values[c] / s[c];
          await writer.write(bytesOf(values));
        });
        setExternal(gamma, location, p);
        for (const lin of g.linears) {
          const w = inits.get(lin.weight)!;
          const target = plan.rename.get(lin.weight) ?? lin.weight;
          const wsrc = tensorBytes(w, m.path);
          const dims = dimsOf(w);
          const pw = await place(`linear|${sourceId(wsrc)}|${g.key}|${lin.layout}`, 4 * dims[0] * dims[1], async () => {
            await scaleRows(wsrc, dims[0], dims[1], lin.layout, s, (chunk) => writer.write(chunk));
          });
          if (target === lin.weight) setExternal(w, location, pw);
          else {
            let copy = inits.get(target);
            if (!copy) {
              copy = { name: target, dataType: DataType.FLOAT, dims };
              setExternal(copy, location, pw);
              graph.initializer = [...(graph.initializer ?? []), copy];
              inits.set(target, copy);
            }
            lin.weightRef.node.input![lin.weightRef.input] = target;
          }
          done += 1;
          progress.update('smoothing', done, plan.linearCount);
        }
      }
      dropUnread(m);
    }
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  for (const [gi, m] of loaded.entries()) await writeFileAtomic(resolve(opts.graphs[gi].dst), encodeModel(m.model));
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
    const idx = new GraphIndex(loaded[gi].model.graph!, loaded[gi].path);
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
  const used = new Set(loaded.flatMap((m) => (m.model.graph?.initializer ?? []).map((t) => t.name ?? '')));
  const rename = new Map<string, string>();
  for (const w of [...tied].sort()) {
    let name = w === EMBED_TOKENS && !used.has(LM_HEAD) ? LM_HEAD : `${w}.awq_smoothed`;
    for (let i = 1; used.has(name); i++) name = `${w}.awq_smoothed_${i}`;
    used.add(name);
    rename.set(w, name);
  }
  return { groups, scales, rename, linearCount };
}

/** Removes initializers nothing reads any more (the embedding in decoder_step once lm_head has its own copy). */
function dropUnread(m: LoadedModel): void {
  const graph = m.model.graph!;
  const idx = new GraphIndex(graph, m.path);
  graph.initializer = (graph.initializer ?? []).filter((t: TensorProto) => {
    const name = t.name ?? '';
    return idx.consumersOf(name).length > 0 || idx.graphOutputs.has(name);
  });
}

/** Identity of a tensor's bytes: its file range, or (inline) a hash of its content. */
function sourceId(src: TensorBytes): string {
  return src.kind === 'external'
    ? `${src.file}|${src.offset}|${src.length}`
    : `inline|${createHash('sha256').update(src.bytes).digest('hex')}`;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** `count` float32 values starting at element `start` of a tensor. */
async function readF32(src: TensorBytes, start: number, count: number): Promise<Float32Array> {
  const out = new Float32Array(count);
  const bytes = new Uint8Array(out.buffer);
  if (src.kind === 'inline') {
    bytes.set(src.bytes.subarray(4 * start, 4 * (start + count)));
    return out;
  }
  let fh;
  try {
    fh = await open(src.file, 'r');
  } catch (err) {
    throw fsError('cannot read', src.file, err);
  }
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesRead } = await fh.read(bytes, done, bytes.length - done, src.offset + 4 * start + done);
      if (bytesRead === 0) throw new UserError(`${src.file}: unexpected end of file`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
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
    const slab = await readF32(src, r0 * cols, n * cols);
    for (let r = 0; r < n; r++) {
      const base = r * cols;
      if (layout === 'KN') {
        const f = s[r0 + r];
        for (let c = 0; c < cols; c++) slab[base + c] *= f;
      } else {
        for (let c = 0; c < cols; c++) slab[base + c] *= s[c];
      }
    }
    await sink(bytesOf(slab));
  }
}
