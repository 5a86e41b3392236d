/**
 * Where a decoder_step goes: runs one decoder_step graph under onnxruntime's profiler and prints
 * kernel time per op type and per node (layers folded), averaged over the timed runs.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/investigation/profile-step.js --model-dir DIR [--graph decoder_step.int4.onnx]
 *     [--past 200] [--warmup 3] [--runs 10] [--threads N] [--top 25] [--json]
 *
 * The caches are synthetic ([L,1,KV,past,D] uniform values); the embedding row is token 13.
 * Also prints the median wall time per run without the profiler (a second session), since
 * profiling itself adds overhead per kernel.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { readTrace, summarize, type CostRow } from './ort-profile.js';
import { stepFeeds } from './step-feeds.js';
import { median, timeRepeated } from './stats.js';

interface Flags { modelDir: string; graph: string; past: string; warmup: string; runs: string; threads?: string; top: string; json?: boolean }

function printRows(title: string, rows: CostRow[], top: number): void {
  console.log(`\n${title}\n| rank | ${title.startsWith('by op') ? 'op type' : 'node (layers folded)'} | op | calls/run | µs/run | share |\n|---|---|---|---|---|---|`);
  rows.slice(0, top).forEach((r, i) => console.log(`| ${i + 1} | ${r.key} | ${r.opType} | ${r.calls} | ${r.usPerRun} | ${(100 * r.share).toFixed(1)} % |`));
}

async function main(): Promise<void> {
  const f = new Command('profile-step')
    .requiredOption('--model-dir <dir>').option('--graph <file>', 'graph file in the model dir', 'decoder_step.int4.onnx')
    .option('--past <n>', 'past length', '200').option('--warmup <n>', 'untimed runs', '3').option('--runs <n>', 'profiled runs', '10')
    .option('--threads <n>', 'intra-op threads (default: onnxruntime)').option('--top <n>', 'rows to print', '25').option('--json')
    .parse(process.argv).opts<Flags>();
  const past = Number(f.past);
  const warmup = Number(f.warmup);
  const runs = Number(f.runs);
  const graph = join(f.modelDir, f.graph);
  const feeds = await stepFeeds(f.modelDir, past);
  const base: ort.InferenceSession.SessionOptions = {
    executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
    ...(f.threads ? { intraOpNumThreads: Number(f.threads), interOpNumThreads: 1 } : {}),
  };
  const plain = await ort.InferenceSession.create(graph, base);
  const wallMs = median(await timeRepeated(warmup, runs, () => plain.run(feeds)));
  await plain.release();

  const dir = await mkdtemp(join(tmpdir(), 'ort-profile-'));
  try {
    const profiled = await ort.InferenceSession.create(graph, { ...base, enableProfiling: true, profileFilePrefix: join(dir, 'step') });
    await timeRepeated(warmup, runs, () => profiled.run(feeds));
    profiled.endProfiling();
    await profiled.release();
    const file = (await readdir(dir)).find((n) => n.endsWith('.json'));
    if (!file) throw new Error(`onnxruntime wrote no profile into ${dir}`);
    const s = summarize(await readTrace(join(dir, file)), runs);
    if (f.json) {
      console.log(JSON.stringify({ graph, past, threads: f.threads ?? 'default', wallMs, ...s }, null, 2));
      return;
    }
    console.log(`${graph} at ${past} past: ${wallMs.toFixed(2)} ms median wall (no profiler); profiled run ${(s.runUs / 1000).toFixed(2)} ms, kernels ${(s.kernelUs / 1000).toFixed(2)} ms`);
    printRows('by op type', s.byOpType, Number(f.top));
    printRows('by node', s.byNode, Number(f.top));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
