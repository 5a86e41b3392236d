/**
 * Quantize benchmark (not a test).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/cli/main.js fixtures --preset 0.6b --output /tmp/ck06
 *   node dist/cli/main.js export --model /tmp/ck06 --output /tmp/m06
 *   node dist/investigation/bench-quantize.js --model-dir /tmp/m06 [--quantize-only] [--rounds 30] [--keep]
 *
 * 1. `qwen3-onnx quantize --model-dir DIR` (defaults: int4, block 64, accuracy_level 4, fused)
 *    twice under /usr/bin/time -v: wall time and peak RSS (the second run reads warm page cache).
 * 2. Size of the files the int4 variant loads (encoder, int4 decoders, int4 data, embed_tokens.bin,
 *    config, tokenizer), against the Python pipeline's 2.0 GB (0.6B) / 4.0 GB (1.7B).
 * 3. decoder_step latency at 200 past tokens for fp32 / int4, fused / unfused, accuracy_level 0 / 4
 *    and with SkipSimplifiedLayerNormalization: each variant is built under DIR/bench-variants/,
 *    all are loaded at once (default ORT optimisation level, all cores) and warmed up, then run
 *    round-robin, one token each per round for `rounds` rounds, so load from other processes
 *    falls on every variant alike; each variant reports its median and quartiles.
 * Prints one JSON object. DIR/bench-variants and the int4 files are removed unless --keep.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timeVerbose, type TimedRun } from './time-verbose.js';
import * as ort from 'onnxruntime-node';
import { transformGraphs } from '../quantize/transform.js';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');
const PAST = 200;


/** Files a consumer loads for the int4 variant (falls back to the float encoder). */
async function int4VariantBytes(dir: string): Promise<number> {
  const skip = new Set(['decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data']);
  let total = 0;
  for (const f of await readdir(dir)) {
    if (skip.has(f) || /\.int8\./.test(f) || f === 'bench-variants') continue;
    const s = await stat(join(dir, f));
    if (s.isFile()) total += s.size;
  }
  return total;
}

interface StepVariant { name: string; path: string }

async function buildVariants(dir: string): Promise<StepVariant[]> {
  const out = join(dir, 'bench-variants');
  const step = join(dir, 'decoder_step.onnx');
  const make = async (name: string, fuse: boolean, skipFusion: boolean, accuracyLevel: number | null): Promise<StepVariant> => {
    const dst = join(out, name, 'decoder_step.onnx');
    await transformGraphs({
      graphs: [{ src: step, dst }], dataFile: join(out, name, 'decoder_weights.data'), fuse, skipFusion,
      quantize: accuracyLevel === null ? null : { bits: 4, blockSize: 64, symmetric: false, accuracyLevel, exclude: [] },
    });
    return { name, path: dst };
  };
  return [
    { name: 'fp32-unfused', path: step },
    await make('fp32-fused', true, false, null),
    await make('int4-unfused-al4', false, false, 4),
    await make('int4-fused-al0', true, false, 0),
    { name: 'int4-fused-al4', path: join(dir, 'decoder_step.int4.onnx') },
    await make('int4-fused-skip-al4', true, true, 4),
  ];
}

function stepFeeds(cfg: { hidden: number; layers: number; kvHeads: number; headDim: number }): Record<string, ort.Tensor> {
  let seed = 12345;
  const rand = (n: number, scale: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) { seed = (seed * 1103515245 + 12345) >>> 0; a[i] = ((seed / 4294967296) - 0.5) * scale; }
    return a;
  };
  const kv = [cfg.layers, 1, cfg.kvHeads, PAST, cfg.headDim];
  const n = cfg.layers * cfg.kvHeads * PAST * cfg.headDim;
  return {
    input_embeds: new ort.Tensor('float32', rand(cfg.hidden, 0.1), [1, 1, cfg.hidden]),
    position_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(PAST)), [1, 1]),
    past_keys: new ort.Tensor('float32', rand(n, 2), kv),
    past_values: new ort.Tensor('float32', rand(n, 2), kv),
  };
}

/** Median and quartiles (ms) of one decoder_step per variant per round, variants interleaved. */
async function timeSteps(variants: StepVariant[], feeds: Record<string, ort.Tensor>, rounds: number) {
  const sessions = [];
  for (const v of variants) sessions.push(await ort.InferenceSession.create(v.path, { intraOpNumThreads: availableParallelism() }));
  try {
    for (const s of sessions) for (let i = 0; i < 3; i++) await s.run(feeds);
    const ms: number[][] = variants.map(() => []);
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so no variant always runs right after the same neighbour.
      for (let j = 0; j < sessions.length; j++) {
        const i = (j + r) % sessions.length;
        const t = performance.now();
        await sessions[i].run(feeds);
        ms[i].push(performance.now() - t);
      }
    }
    const q = (a: number[], f: number): number => Number(a[Math.min(a.length - 1, Math.floor(f * a.length))].toFixed(1));
    return Object.fromEntries(variants.map((v, i) => {
      const a = ms[i].sort((x, y) => x - y);
      return [v.name, { median: q(a, 0.5), p25: q(a, 0.25), p75: q(a, 0.75) }];
    }));
  } finally {
    for (const s of sessions) await s.release();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--');
  const opt = (name: string, fallback: string): string => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : fallback; };
  const dir = resolve(opt('--model-dir', ''));
  if (!args.includes('--model-dir')) throw new Error('usage: bench-quantize --model-dir DIR [--quantize-only] [--rounds N] [--keep]');
  const rounds = Number(opt('--rounds', '30'));
  const keep = args.includes('--keep');

  const runs: Pick<TimedRun, 'wallSeconds' | 'peakRssMiB'>[] = [];
  let report: unknown;
  for (let i = 0; i < 2; i++) {
    const m = await timeVerbose([process.execPath, CLI, 'quantize', '--model-dir', dir, '--json']);
    runs.push({ wallSeconds: m.wallSeconds, peakRssMiB: m.peakRssMiB });
    report = JSON.parse(m.stdout);
    process.stderr.write(`quantize run ${i + 1}: ${m.wallSeconds.toFixed(1)} s, ${m.peakRssMiB} MiB\n`);
  }
  const data = (report as { report: { data: { fileBytes: number; bytesSaved: number } } }).report.data;
  const result: Record<string, unknown> = {
    modelDir: dir,
    cores: availableParallelism(),
    quantize: runs,
    int4DataBytes: data.fileBytes,
    dedupBytesSaved: data.bytesSaved,
    int4VariantBytes: await int4VariantBytes(dir),
  };

  if (!args.includes('--quantize-only')) {
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { decoder: { hidden_size: number; num_layers: number; num_key_value_heads: number; head_dim: number } };
    const feeds = stepFeeds({ hidden: cfg.decoder.hidden_size, layers: cfg.decoder.num_layers, kvHeads: cfg.decoder.num_key_value_heads, headDim: cfg.decoder.head_dim });
    const variants = await buildVariants(dir);
    result.stepMsAt200 = await timeSteps(variants, feeds, rounds);
  }
  if (!keep) {
    await rm(join(dir, 'bench-variants'), { recursive: true, force: true });
    for (const f of ['decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data']) await rm(join(dir, f), { force: true });
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

await main();
