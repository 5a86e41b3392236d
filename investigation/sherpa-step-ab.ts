/**
 * One decode step, split layout vs sherpa-onnx layout, interleaved (so load on a shared box hits
 * both alike), and where the sherpa-onnx decoder's step goes (onnxruntime profiler by op type).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/investigation/sherpa-step-ab.js --split-dir SPLIT --sherpa-dir SHERPA [--variant int4]
 *     [--past 50,200,500] [--rounds 5] [--reps 5] [--threads N] [--profile-past 200]
 *
 * Split: decoder_step with synthetic stacked caches, all outputs (the caches come back to JS) and
 * logits only. Sherpa-onnx: one decoder call over cache buffers of past + 1 rows as our runtime
 * makes it (deltas written back), and logits only. Prints the median over rounds of each
 * round's median, ms.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { AsrModel } from '../runtime/session.js';
import { SherpaAsrModel } from '../runtime/sherpa-session.js';
import { readTrace, summarize } from './ort-profile.js';
import { timeDecoderStep } from './runtime-bench.js';
import { timeSherpaStep } from './sherpa-runtime-bench.js';
import { median, timeRepeated } from './stats.js';

interface Flags { splitDir: string; sherpaDir: string; variant: string; past: string; rounds: string; reps: string; threads?: string; profilePast: string }

/** Feeds of one sherpa decoder call at `past` for a bare session (positions bound by the graph's own names). */
function sherpaFeeds(model: SherpaAsrModel, past: number): Record<string, ort.Tensor> {
  const d = model.config.decoder;
  const rng = new Prng(past);
  const names = model.decoder.inputNames;
  const feeds: Record<string, ort.Tensor> = {
    [names[0]]: new ort.Tensor('int64', BigInt64Array.from([13n]), [1, 1]),
    [names[1]]: new ort.Tensor('float32', new Float32Array(d.hidden_size), [1, 1, d.hidden_size]),
    [names[2]]: new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]),
    [names[3]]: new ort.Tensor('int64', BigInt64Array.from([BigInt(past)]), [1]),
  };
  const n = (past + 1) * d.num_key_value_heads * d.head_dim;
  for (const name of names.slice(4)) {
    feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, () => rng.next() - 0.5), [1, past + 1, d.num_key_value_heads, d.head_dim]);
  }
  return feeds;
}

async function main(): Promise<void> {
  const f = new Command('sherpa-step-ab')
    .requiredOption('--split-dir <dir>').requiredOption('--sherpa-dir <dir>').option('--variant <v>', 'variant', 'int4')
    .option('--past <list>', 'past lengths', '50,200,500').option('--rounds <n>', 'interleaved rounds', '5').option('--reps <n>', 'timed runs per round', '5')
    .option('--threads <n>', 'intra-op threads (default: onnxruntime)').option('--profile-past <n>', 'past of the profiled sherpa step', '200')
    .parse(process.argv).opts<Flags>();
  const pasts = f.past.split(',').map(Number);
  const rounds = Number(f.rounds);
  const reps = Number(f.reps);
  const threads = f.threads ? Number(f.threads) : undefined;
  const split = await AsrModel.load(f.splitDir, { variant: f.variant, threads });
  const sherpa = await SherpaAsrModel.load(f.sherpaDir, { variant: f.variant, threads });
  const H = sherpa.config.decoder.hidden_size;
  const audio = new ort.Tensor('float32', new Float32Array(H), [1, 1, H]);
  const series = new Map<string, number[]>();
  const add = (key: string, ms: number[]): void => { series.set(key, [...(series.get(key) ?? []), median(ms)]); };
  for (let r = 0; r < rounds; r++) {
    for (const past of pasts) {
      add(`split all outputs @${past}`, await timeDecoderStep(split, past, 1, reps));
      add(`split logits only @${past}`, await timeDecoderStep(split, past, 1, reps, true));
      add(`sherpa-onnx runtime call @${past}`, await timeSherpaStep(sherpa, audio, past, 1, reps));
      add(`sherpa-onnx logits only @${past}`, await timeSherpaStep(sherpa, audio, past, 1, reps, true));
    }
  }
  console.log(`| ${f.variant} step (median of ${rounds} interleaved rounds x ${reps} runs) | ms |\n|---|---|`);
  for (const [key, ms] of series) console.log(`| ${key} | ${median(ms).toFixed(1)} |`);

  const past = Number(f.profilePast);
  const feeds = sherpaFeeds(sherpa, past);
  const dir = await mkdtemp(join(tmpdir(), 'sherpa-profile-'));
  try {
    const profiled = await ort.InferenceSession.create(sherpa.files.decoder, {
      executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3, enableProfiling: true, profileFilePrefix: join(dir, 'step'),
      ...(threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {}),
    });
    await timeRepeated(3, reps, () => profiled.run(feeds));
    profiled.endProfiling();
    await profiled.release();
    const file = (await readdir(dir)).find((n) => n.endsWith('.json'));
    if (!file) throw new Error(`onnxruntime wrote no profile into ${dir}`);
    const s = summarize(await readTrace(join(dir, file)), reps);
    console.log(`\nsherpa-onnx ${f.variant} decoder at ${past} past under the profiler: run ${(s.runUs / 1000).toFixed(1)} ms, kernels ${(s.kernelUs / 1000).toFixed(1)} ms\n| op type | calls/run | µs/run | share |\n|---|---|---|---|`);
    for (const row of s.byOpType.slice(0, 12)) console.log(`| ${row.key} | ${row.calls} | ${row.usPerRun} | ${(100 * row.share).toFixed(1)} % |`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await Promise.all([split.release(), sherpa.release()]);
  }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
