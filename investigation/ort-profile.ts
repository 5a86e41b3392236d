import { readFile } from 'node:fs/promises';

/**
 * onnxruntime profiler traces (SessionOptions.enableProfiling): a JSON array of Chrome-trace
 * events. Kernel events are `cat: "Node"`, `name: "<node>_kernel_time"`, `dur` in µs,
 * `args.op_name`; each `session.run` is one `cat: "Session"`, `name: "model_run"` event.
 */

export interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string; provider?: string; [k: string]: unknown };
}

export interface CostRow { key: string; opType: string; calls: number; usPerRun: number; share: number }

export interface ProfileSummary {
  runs: number;
  /** Mean model_run duration, µs. */
  runUs: number;
  /** Sum of kernel times per run, µs (the rest is framework overhead between kernels). */
  kernelUs: number;
  byOpType: CostRow[];
  byNode: CostRow[];
}

export async function readTrace(path: string): Promise<TraceEvent[]> {
  return JSON.parse(await readFile(path, 'utf8')) as TraceEvent[];
}

/**
 * Aggregates the kernels of the last `runs` model_run events (earlier runs are warm-up).
 * Node names are grouped by `normalize` (default: layer numbers folded, `/model/layers.N/` ->
 * `/model/layers.*​/`), so a row is one node of every layer together.
 */
export function summarize(events: TraceEvent[], runs: number, normalize: (node: string) => string = foldLayers): ProfileSummary {
  const modelRuns = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const kept = modelRuns.slice(-runs);
  if (kept.length === 0) throw new Error('trace has no model_run events');
  const inKept = (e: TraceEvent): boolean => kept.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && inKept(e));
  const n = kept.length;
  const total = kernels.reduce((a, e) => a + e.dur, 0);
  const group = (keyOf: (e: TraceEvent) => string): CostRow[] => {
    const rows = new Map<string, CostRow>();
    for (const e of kernels) {
      const key = keyOf(e);
      const row = rows.get(key) ?? { key, opType: e.args?.op_name ?? '?', calls: 0, usPerRun: 0, share: 0 };
      row.calls += 1 / n;
      row.usPerRun += e.dur / n;
      rows.set(key, row);
    }
    return [...rows.values()]
      .map((r) => ({ ...r, calls: Math.round(r.calls), usPerRun: Math.round(r.usPerRun), share: Math.round((1000 * r.usPerRun * n) / total) / 1000 }))
      .sort((a, b) => b.usPerRun - a.usPerRun || (a.key < b.key ? -1 : 1));
  };
  return {
    runs: n,
    runUs: Math.round(kept.reduce((a, r) => a + r.dur, 0) / n),
    kernelUs: Math.round(total / n),
    byOpType: group((e) => e.args?.op_name ?? '?'),
    byNode: group((e) => normalize(e.name.replace(/_kernel_time$/, ''))),
  };
}

export function foldLayers(node: string): string {
  return node.replace(/layers\.\d+/g, 'layers.*');
}
