/**
 * A/B timing of decoder_step graph variants (not a test). Loads every variant as its own
 * onnxruntime session (as runtime/ does: sequential, all optimisations), checks each one's
 * outputs against the first (the baseline) on the same inputs, then times them in interleaved
 * rounds (the order rotates every round) so load from other processes skews all alike.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/investigation/step-ab.js --model-dir DIR --variant base=decoder_step.int4.onnx \
 *     --variant kv=decoder_step.int4.kv.onnx [--past 200] [--rounds 5] [--warmup 2] [--reps 7] [--threads N] [--json]
 *
 * Per variant: median and min over rounds of the per-round median, ratio to the baseline, and
 * the largest absolute difference of logits / present caches from the baseline.
 */
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { stepFeeds } from './step-feeds.js';
import { median, round, timeRepeated } from './stats.js';

export interface AbRow {
  name: string; file: string; medianMs: number; minMs: number; ratio: number;
  /** max |variant - baseline| over each output, and the same divided by max |baseline|. */
  maxAbsDiff: Record<string, number>; maxRelDiff: Record<string, number>;
}

/** What a timed run costs: wall-clock ms, or process CPU ms (user + system, all threads). */
export type Metric = 'wall' | 'cpu';

/**
 * Like stats.timeRepeated, in CPU ms when `metric` is cpu: on a machine shared with other work,
 * CPU time leaves out the time spent waiting for a core (it still pays for cache and memory
 * contention).
 */
async function measureRepeated(metric: Metric, warmup: number, reps: number, fn: () => Promise<unknown>): Promise<number[]> {
  if (metric === 'wall') return timeRepeated(warmup, reps, fn);
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    await fn();
    const c = process.cpuUsage(c0);
    out.push((c.user + c.system) / 1000);
  }
  return out;
}

function diff(ref: ort.Tensor, got: ort.Tensor): { abs: number; rel: number } {
  if (ref.dims.join() !== got.dims.join()) return { abs: Infinity, rel: Infinity };
  const x = ref.data as Float32Array;
  const y = got.data as Float32Array;
  let m = 0;
  let scale = 0;
  for (let i = 0; i < x.length; i++) {
    m = Math.max(m, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(x[i]));
  }
  return { abs: m, rel: scale > 0 ? m / scale : m };
}

export async function abSteps(o: {
  modelDir: string; variants: Array<{ name: string; file: string }>; past: number; rounds: number; warmup: number; reps: number; threads?: number;
  metric: Metric;
}): Promise<AbRow[]> {
  const feeds = await stepFeeds(o.modelDir, o.past);
  const options: ort.InferenceSession.SessionOptions = {
    executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
    ...(o.threads ? { intraOpNumThreads: o.threads, interOpNumThreads: 1 } : {}),
  };
  const sessions: ort.InferenceSession[] = [];
  for (const v of o.variants) sessions.push(await ort.InferenceSession.create(join(o.modelDir, v.file), options));
  try {
    const reference = await sessions[0].run(feeds);
    const diffs: Array<Record<string, { abs: number; rel: number }>> = [];
    for (const s of sessions) {
      const out = await s.run(feeds);
      diffs.push(Object.fromEntries(['logits', 'present_keys', 'present_values'].map((k) => [k, diff(reference[k], out[k])])));
    }
    const perRound: number[][] = o.variants.map(() => []);
    for (let r = 0; r < o.rounds; r++) {
      for (let k = 0; k < sessions.length; k++) {
        const i = (k + r) % sessions.length;
        perRound[i].push(median(await measureRepeated(o.metric, o.warmup, o.reps, () => sessions[i].run(feeds))));
      }
    }
    const base = median(perRound[0]);
    return o.variants.map((v, i) => ({
      name: v.name, file: v.file,
      medianMs: round(median(perRound[i]), 2), minMs: round(Math.min(...perRound[i]), 2),
      ratio: round(median(perRound[i]) / base, 3),
      maxAbsDiff: Object.fromEntries(Object.entries(diffs[i]).map(([k, d]) => [k, d.abs])),
      maxRelDiff: Object.fromEntries(Object.entries(diffs[i]).map(([k, d]) => [k, d.rel])),
    }));
  } finally {
    for (const s of sessions) await s.release();
  }
}

async function main(): Promise<void> {
  const f = new Command('step-ab')
    .requiredOption('--model-dir <dir>')
    .requiredOption('--variant <name=file...>', 'graph variants; the first is the baseline')
    .option('--past <n>', 'past length', '200').option('--rounds <n>', 'interleaved rounds', '5')
    .option('--warmup <n>', 'untimed runs per round', '2').option('--reps <n>', 'timed runs per round', '7')
    .option('--threads <n>', 'intra-op threads (default: onnxruntime)').option('--json')
    .option('--metric <m>', 'wall (clock) or cpu (process user+system time; robust to a busy machine)', 'wall')
    .parse(process.argv).opts<{ modelDir: string; variant: string[]; past: string; rounds: string; warmup: string; reps: string; threads?: string; json?: boolean; metric: string }>();
  if (f.metric !== 'wall' && f.metric !== 'cpu') throw new Error(`--metric must be wall or cpu, got ${f.metric}`);
  const variants = f.variant.map((s) => {
    const [name, file] = s.split('=');
    if (!name || !file) throw new Error(`--variant wants name=file, got ${s}`);
    return { name, file };
  });
  const rows = await abSteps({
    modelDir: f.modelDir, variants, past: Number(f.past), rounds: Number(f.rounds), warmup: Number(f.warmup), reps: Number(f.reps),
    threads: f.threads ? Number(f.threads) : undefined, metric: f.metric,
  });
  if (f.json) { console.log(JSON.stringify({ past: Number(f.past), threads: f.threads ?? 'default', rows }, null, 2)); return; }
  console.log(`decoder_step at ${f.past} past, ${f.rounds} rounds x (${f.warmup} warm-up + ${f.reps} timed), threads ${f.threads ?? 'default'}, ${f.metric} ms`);
  console.log('| variant | median of round medians ms | min ms | vs baseline | max abs diff (rel.) logits / keys / values |\n|---|---|---|---|---|');
  const fmt = (r: AbRow, k: string): string => `${r.maxAbsDiff[k].toExponential(1)} (${r.maxRelDiff[k].toExponential(1)})`;
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.medianMs} | ${r.minMs} | ${r.ratio.toFixed(3)}x | ${fmt(r, 'logits')} / ${fmt(r, 'present_keys')} / ${fmt(r, 'present_values')} |`);
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
