import { dirname, resolve } from 'node:path';
import { withAtomicWriters } from '../common/atomic.js';
import { UserError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { fuseRmsNorm, type FuseReport } from './fuse-rmsnorm.js';
import {
  TaskRegistry, quantizeMatMuls,
  type GeneratedTensor, type NBitsOptions, type NBitsReport, type NBitsSelector, type WeightTask,
} from './matmul-nbits.js';
import { quantizeEmbeddingGathers, type GatherQuantizeOptions, type GatherQuantizeReport } from './gather-block-quantized.js';
import { f32ToF16Bytes } from '../common/float16.js';
import {
  DataType, ExternalDataWriter, checkExternalRanges, dimsOf, encodeModel, isExternal, loadModel, markExternal, pruneGraph, tensorBytes,
  type LoadedModel, type Placement,
} from '../common/onnx/index.js';
import { packSiblingMatMulNBits, type PackReport } from './pack-projections.js';
import { storeConvWeightsAsBf16, type Bf16ConvReport } from './bf16-conv-weights.js';
import { quantizeWeight } from './quantize-weight.js';
import type { RtnOutput } from './rtn.js';
import { DedupDataFile, type DataFileStats } from './weights-file.js';
import { RtnWorkerPool } from './worker-pool.js';

/**
 * Rewrites a set of graphs that share weights (decoder_init + decoder_step) into new .onnx files
 * that point into ONE new external-data file: RMSNorm fusion first (on the float graph, so
 * quantisation sees the graph that will run), then MatMulNBits quantisation, then every
 * externally stored initializer written once by content hash. Inline initializers stay inline.
 *
 * Output bytes depend only on the inputs and options: graphs and initializers are visited in
 * file order, each weight's quantised bytes are fixed by its own values, and worker scheduling
 * only decides who computes which fixed region.
 */

export interface GraphPair {
  /** The float .onnx to read. */
  src: string;
  /** The .onnx to write (its data goes into `dataFile`, which must sit in the same directory). */
  dst: string;
}

export interface TransformOptions {
  graphs: GraphPair[];
  dataFile: string;
  fuse: boolean;
  /** Fold residual Adds into SkipSimplifiedLayerNormalization (only with `fuse`). */
  skipFusion: boolean;
  /** null: no quantisation (writes fused float graphs). */
  quantize: NBitsOptions | null;
  /**
   * Per-weight choice (a recipe's components, quantize/recipe.ts): overrides `quantize`'s
   * parameters for each MatMul/Gemm, or leaves it float. Only with `quantize`.
   */
  select?: NBitsSelector;
  /** Token lookups to rewrite into GatherBlockQuantized (gather-block-quantized.ts). Only with `quantize`. */
  embedding?: GatherQuantizeOptions | null;
  /** Pack sibling MatMulNBits (q|k|v, gate|up) into one wider node each (pack-projections.ts). */
  pack?: boolean;
  /**
   * Conv weights of at least this many float32 bytes that are exact in bfloat16 are stored so, with
   * a Cast (bf16-conv-weights.ts; lossless). Only with `quantize`; default 1 MiB, null: never.
   */
  bf16ConvMinBytes?: number | null;
  /** Refuse an exclude pattern that matches nothing here (default true; a caller running several transforms checks the union). */
  excludeMustMatch?: boolean;
  /** Worker threads (default: os.availableParallelism()). */
  threads?: number;
  progress?: Progress;
}

export interface GraphReport {
  src: string;
  dst: string;
  fusion: FuseReport;
  quantization: NBitsReport | null;
  /** Present when rewriting token lookups (`embedding`). */
  gathers?: GatherQuantizeReport;
  /** Present when quantising with `pack`. */
  packing?: PackReport;
  /** Conv weights stored as bfloat16 (present when quantising). */
  bf16Conv?: Bf16ConvReport;
}

export interface TransformReport {
  graphs: GraphReport[];
  data: DataFileStats & { file: string };
  weightsQuantized: number;
}

/** How many weights may be in flight ahead of the writer (bounds memory to a few outputs). */
const LOOKAHEAD = 2;

export async function transformGraphs(opts: TransformOptions): Promise<TransformReport> {
  const progress = opts.progress ?? silentProgress;
  const dataFile = resolve(opts.dataFile);
  for (const g of opts.graphs) {
    if (dirname(resolve(g.dst)) !== dirname(dataFile)) throw new UserError(`${g.dst}: output graph must sit beside its data file ${dataFile}`);
    if (resolve(g.src) === resolve(g.dst)) throw new UserError(`${g.dst}: output would overwrite its input`);
  }

  const loaded: LoadedModel[] = [];
  for (const g of opts.graphs) {
    const m = await loadModel(g.src);
    await checkExternalRanges(m);
    for (const t of m.graph.initializer) {
      const src = tensorBytes(t, m.path);
      if (src.kind === 'external' && src.file === dataFile) throw new UserError(`${g.src}: reads ${dataFile}, which this run would overwrite`);
    }
    loaded.push(m);
  }

  const registry = new TaskRegistry();
  const generated = new Map<LoadedModel, Map<string, GeneratedTensor>>();
  /** Bytes of initializers a pass made from a float one (bf16 conv weights), per graph. */
  const derived = new Map<LoadedModel, Map<string, Uint8Array>>();
  const reports: GraphReport[] = [];
  loaded.forEach((m, i) => {
    const fusion = opts.fuse ? fuseRmsNorm(m, { skip: opts.skipFusion }) : { rmsNorm: 0, skipRmsNorm: 0 };
    let quantization: NBitsReport | null = null;
    let packing: PackReport | undefined;
    let gathers: GatherQuantizeReport | undefined;
    let bf16Conv: Bf16ConvReport | undefined;
    if (opts.quantize) {
      const r = quantizeMatMuls(m, opts.quantize, registry, opts.select);
      generated.set(m, r.generated);
      quantization = r.report;
      if (opts.embedding) gathers = quantizeEmbeddingGathers(m, opts.embedding, registry, r.generated);
      if (opts.pack) packing = packSiblingMatMulNBits(m, r.generated);
      const minBytes = opts.bf16ConvMinBytes === undefined ? 1 << 20 : opts.bf16ConvMinBytes;
      if (minBytes !== null) {
        const b = storeConvWeightsAsBf16(m, minBytes);
        derived.set(m, b.bytes);
        bf16Conv = b.report;
      }
    }
    pruneGraph(m.graph);
    reports.push({
      src: m.path, dst: resolve(opts.graphs[i].dst), fusion, quantization,
      ...(gathers ? { gathers } : {}), ...(packing ? { packing } : {}), ...(bf16Conv ? { bf16Conv } : {}),
    });
  });

  if (opts.excludeMustMatch ?? true) opts.quantize?.exclude.forEach((pattern, i) => {
    if (!reports.some((r) => (r.quantization?.excludeHits[i] ?? 0) > 0)) {
      throw new UserError(`--exclude ${pattern} matches no quantisable MatMul/Gemm node or weight name`);
    }
  });

  // Distinct weights in the order the writer will need them.
  const order: WeightTask[] = [];
  const seen = new Set<WeightTask>();
  for (const m of loaded) {
    for (const t of m.graph.initializer) {
      const g = generated.get(m)?.get(t.name);
      for (const task of g?.tasks ?? []) if (!seen.has(task)) { seen.add(task); order.push(task); }
    }
  }

  const pool = order.length > 0 ? new RtnWorkerPool(opts.threads) : null;
  try {
    const stats = await withAtomicWriters(async (openWriter) => {
      const data = new DedupDataFile(new ExternalDataWriter(await openWriter(dataFile)));
      const computing = new Map<WeightTask, Promise<RtnOutput>>();
      const written = new Map<string, Placement>();
      const start = (task: WeightTask): void => {
        if (!pool) throw new Error(`quantising ${task.weightName} without a worker pool`);
        const p = quantizeWeight(pool, task, task.params);
        p.catch(() => undefined); // surfaced when awaited
        computing.set(task, p);
      };
      let next = 0;
      const startUpTo = (i: number): void => {
        while (next < order.length && next <= i + LOOKAHEAD) start(order[next++]);
      };
      const finished = new Set<WeightTask>();
      // Start quantising at once, so it overlaps the copy of the float tensors written first.
      if (order.length > 0) startUpTo(0);
      for (const [gi, m] of loaded.entries()) {
        const gen = generated.get(m);
        const own = derived.get(m);
        for (const t of m.graph.initializer) {
          const g = gen?.get(t.name);
          const dims = dimsOf(t);
          const made = own?.get(t.name);
          if (made) markExternal(t, data.location, await data.addBytes(t.dataType, dims, made));
          else if (g) {
            const partKey = `${g.tasks.map((k) => k.key).join('+')}|${g.part}`;
            let placement = written.get(partKey);
            if (placement) data.countReuse(placement);
            else {
              const bytes = await partBytes(computing, g, startUpTo, start, order);
              // Scales declared float16 (an unshared lookup's) were rounded to float16 values by the kernel.
              const stored = g.part === 'scales' && t.dataType === DataType.FLOAT16
                ? f32ToF16Bytes(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)))
                : bytes;
              placement = await data.addBytes(t.dataType, dims, stored);
              written.set(partKey, placement);
              if (lastPart(g)) {
                for (const task of g.tasks) { computing.delete(task); finished.add(task); }
                progress.update('quantizing', finished.size, order.length);
              }
            }
            markExternal(t, data.location, placement);
          } else if (isExternal(t)) {
            const src = tensorBytes(t, m.path);
            if (src.kind !== 'external') continue;
            markExternal(t, data.location, await data.addFileRange(t.dataType, dims, src.file, src.offset, src.length));
          }
        }
        const w = await openWriter(resolve(opts.graphs[gi].dst));
        await w.write(encodeModel(m.model));
      }
      return data.stats;
    });
    progress.finish();
    return { graphs: reports, data: { ...stats, file: dataFile }, weightsQuantized: order.length };
  } finally {
    await pool?.close();
  }
}

/**
 * The bytes of one generated tensor, starting (and prefetching) its weights' quantisation: one
 * weight's part, or the parts of packed weights concatenated in order (all are N-major).
 */
async function partBytes(
  computing: Map<WeightTask, Promise<RtnOutput>>, g: GeneratedTensor,
  startUpTo: (i: number) => void, start: (task: WeightTask) => void, order: WeightTask[],
): Promise<Uint8Array> {
  startUpTo(Math.max(...g.tasks.map((task) => order.indexOf(task))));
  const parts: Uint8Array[] = [];
  for (const task of g.tasks) {
    // A weight whose other parts were already written (and its output freed) is quantised again.
    if (!computing.has(task)) start(task);
    const out = await computing.get(task);
    const arr = out && (g.part === 'B' ? out.B : g.part === 'scales' ? out.scales : out.zeroPoints);
    if (!arr) throw new Error(`${task.weightName}: no ${g.part} computed`);
    parts.push(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  }
  if (parts.length === 1) return parts[0];
  const joined = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) { joined.set(p, at); at += p.byteLength; }
  return joined;
}

/** True for the last part written of a weight (its zero points, or its scales when symmetric). */
function lastPart(g: GeneratedTensor): boolean {
  return g.tasks[0].params.symmetric ? g.part === 'scales' : g.part === 'zeroPoints';
}
