import { basename, dirname, resolve } from 'node:path';
import { withAtomicWriters } from '../common/atomic.js';
import { UserError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { fuseRmsNorm, type FuseReport } from './fuse-rmsnorm.js';
import {
  TaskRegistry, pruneGraph, quantizeMatMuls,
  type GeneratedTensor, type NBitsOptions, type NBitsReport, type WeightTask,
} from './matmul-nbits.js';
import {
  checkExternalRanges, dimsOf, encodeModel, isExternal, loadModel, tensorBytes, type LoadedModel,
} from '../common/onnx-model.js';
import { quantizeWeight } from './quantize-weight.js';
import type { RtnOutput } from './rtn.js';
import { DedupDataFile, setExternal, type DataFileStats } from './weights-file.js';
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
  /** Worker threads (default: os.availableParallelism()). */
  threads?: number;
  progress?: Progress;
}

export interface GraphReport {
  src: string;
  dst: string;
  fusion: FuseReport;
  quantization: NBitsReport | null;
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
  const location = basename(dataFile);
  for (const g of opts.graphs) {
    if (dirname(resolve(g.dst)) !== dirname(dataFile)) throw new UserError(`${g.dst}: output graph must sit beside its data file ${dataFile}`);
    if (resolve(g.src) === resolve(g.dst)) throw new UserError(`${g.dst}: output would overwrite its input`);
  }

  const loaded: LoadedModel[] = [];
  for (const g of opts.graphs) {
    const m = await loadModel(g.src);
    await checkExternalRanges(m);
    for (const t of m.model.graph?.initializer ?? []) {
      const src = tensorBytes(t, m.path);
      if (src.kind === 'external' && src.file === dataFile) throw new UserError(`${g.src}: reads ${dataFile}, which this run would overwrite`);
    }
    loaded.push(m);
  }

  const registry = new TaskRegistry();
  const generated = new Map<LoadedModel, Map<string, GeneratedTensor>>();
  const reports: GraphReport[] = [];
  loaded.forEach((m, i) => {
    const fusion = opts.fuse ? fuseRmsNorm(m, { skip: opts.skipFusion }) : { rmsNorm: 0, skipRmsNorm: 0 };
    let quantization: NBitsReport | null = null;
    if (opts.quantize) {
      const r = quantizeMatMuls(m, opts.quantize, registry);
      generated.set(m, r.generated);
      quantization = r.report;
    }
    pruneGraph(m);
    reports.push({ src: m.path, dst: resolve(opts.graphs[i].dst), fusion, quantization });
  });

  opts.quantize?.exclude.forEach((pattern, i) => {
    if (!reports.some((r) => (r.quantization?.excludeHits[i] ?? 0) > 0)) {
      throw new UserError(`--exclude ${pattern} matches no quantisable MatMul/Gemm node or weight name`);
    }
  });

  // Distinct weights in the order the writer will need them.
  const order: WeightTask[] = [];
  const seen = new Set<WeightTask>();
  for (const m of loaded) {
    for (const t of m.model.graph?.initializer ?? []) {
      const g = generated.get(m)?.get(t.name ?? '');
      if (g && !seen.has(g.task)) { seen.add(g.task); order.push(g.task); }
    }
  }

  const pool = order.length > 0 ? new RtnWorkerPool(opts.threads) : null;
  try {
    const stats = await withAtomicWriters(async (openWriter) => {
      const data = new DedupDataFile(await openWriter(dataFile));
      const computing = new Map<WeightTask, Promise<RtnOutput>>();
      const written = new Map<string, { offset: number; length: number }>();
      let next = 0;
      const startUpTo = (i: number): void => {
        while (next < order.length && next <= i + LOOKAHEAD) {
          const task = order[next++];
          const p = quantizeWeight(pool!, task, opts.quantize!);
          p.catch(() => undefined); // surfaced when awaited
          computing.set(task, p);
        }
      };
      let done = 0;
      // Start quantising at once, so it overlaps the copy of the float tensors written first.
      if (order.length > 0) startUpTo(0);
      for (const [gi, m] of loaded.entries()) {
        const gen = generated.get(m);
        for (const t of m.model.graph?.initializer ?? []) {
          const g = gen?.get(t.name ?? '');
          const dims = dimsOf(t);
          if (g) {
            const partKey = `${g.task.key}|${g.part}`;
            let placement = written.get(partKey);
            if (placement) data.countReuse(placement);
            else {
              placement = await data.addBytes(t.dataType ?? 0, dims, await partBytes(computing, g, startUpTo, order));
              written.set(partKey, placement);
              if (lastPart(g, opts.quantize!)) {
                computing.delete(g.task);
                done += 1;
                progress.update('quantizing', done, order.length);
              }
            }
            setExternal(t, location, placement);
          } else if (isExternal(t)) {
            const src = tensorBytes(t, m.path);
            if (src.kind !== 'external') continue;
            setExternal(t, location, await data.addFileRange(t.dataType ?? 0, dims, src.file, src.offset, src.length));
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

/** The bytes of one generated tensor, starting (and prefetching) its weight's quantisation. */
async function partBytes(
  computing: Map<WeightTask, Promise<RtnOutput>>, g: GeneratedTensor,
  startUpTo: (i: number) => void, order: WeightTask[],
): Promise<Uint8Array> {
  startUpTo(order.indexOf(g.task));
  const out = await computing.get(g.task)!;
  const arr = g.part === 'B' ? out.B : g.part === 'scales' ? out.scales : out.zeroPoints!;
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

function lastPart(g: GeneratedTensor, p: NBitsOptions): boolean {
  return p.symmetric ? g.part === 'scales' : g.part === 'zeroPoints';
}
