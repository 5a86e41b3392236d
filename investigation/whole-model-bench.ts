/**
 * Whole-model int4 benchmark (not a test): the `decoders` and `whole` quantisation presets on one
 * exported model directory, one after the other (both write the `.int4` names).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/cli/main.js fixtures --preset 0.6b --output /tmp/ck06
 *   node dist/cli/main.js export --model /tmp/ck06 --output /tmp/m06
 *   flock /tmp/qwen3-heavy.lock node dist/investigation/whole-model-bench.js --model-dir /tmp/m06 --out /tmp/wb06 \
 *     [--presets decoders,whole] [--shares range,reshape] [--rounds 20] [--audio-seconds 30] [--no-package]
 *
 * Per preset (and, for `whole`, per table arrangement of --shares):
 * 1. `qwen3-onnx quantize --preset P` under /usr/bin/time -v (wall, peak RSS).
 * 2. The int4 variant's files (package's own list): unpacked bytes, largest file; `package` ->
 *    the tar.gz (default compression) and its size.
 * 3. Resident memory: investigation/session-memory-probe.js in a child opening the variant's
 *    encoder, decoder_init and decoder_step (one decoder_step run at 32 past tokens), one row each
 *    (RSS, anonymous, file-backed, load ms).
 * 4. decoder_step ms at 200 past tokens (median of `rounds`), all cores.
 * Once: encoder ms per audio second, fp32 vs each recipe of --encoder-specs (int4 al4, int4 al0,
 * int8 al4 by default, built under --out), on an `audio-seconds` random mel, all sessions loaded,
 * runs alternated, median of `rounds`.
 * Prints one JSON object.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { variantFiles } from '../package/variant-files.js';
import { graphFileFor } from '../model-dir/files.js';
import { stepFeeds } from './step-feeds.js';
import { transformGraphs } from '../quantize/transform.js';
import { BASE_DEFAULTS, recipeSelector, resolveRecipe } from '../quantize/recipe.js';
import { timeVerbose } from './time-verbose.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = resolve(HERE, '../cli/main.js');
const PROBE = resolve(HERE, 'session-memory-probe.js');
const run = promisify(execFile);

const f = new Command('whole-model-bench')
  .requiredOption('--model-dir <dir>').requiredOption('--out <dir>', 'where the archives go (removed at the end)')
  .option('--presets <list>', 'presets in order', 'decoders,whole')
  .option('--shares <list>', 'table arrangements for whole', 'range')
  .option('--rounds <n>', 'timed runs per measurement', '20')
  .option('--audio-seconds <n>', 'encoder input length', '30')
  .option('--no-package', 'skip the tar.gz')
  .option('--encoder-specs <list>', 'encoder recipes timed against fp32, ";"-separated (built under --out)', 'int4;int4,al=0;int8')
  .parse(process.argv)
  .opts<{ modelDir: string; out: string; presets: string; shares: string; rounds: string; audioSeconds: string; package: boolean; encoderSpecs: string }>();

const dir = resolve(f.modelDir);
const rounds = Number(f.rounds);
const threads = availableParallelism();
const sessionOptions: ort.InferenceSession.SessionOptions = {
  executionMode: 'sequential', graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3,
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function sizes(): Promise<{ files: { name: string; bytes: number }[]; unpackedBytes: number; largest: { name: string; bytes: number } }> {
  const names = await variantFiles(dir, 'int4');
  const files = await Promise.all(names.map(async (name) => ({ name, bytes: (await stat(join(dir, name))).size })));
  const largest = files.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  return { files, unpackedBytes: files.reduce((s, x) => s + x.bytes, 0), largest };
}

async function packageSize(label: string): Promise<{ archive: string; bytes: number; wallSeconds: number; peakRssMiB: number }> {
  const out = join(resolve(f.out), label);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const t = await timeVerbose([process.execPath, CLI, 'package', '--model-dir', dir, '--variant', 'int4', '--output', out, '--json', '--quiet']);
  const { manifest } = JSON.parse(t.stdout) as { manifest: { archive: { path: string; size: number } } };
  return { archive: manifest.archive.path, bytes: manifest.archive.size, wallSeconds: t.wallSeconds, peakRssMiB: t.peakRssMiB };
}

async function probe(): Promise<unknown> {
  const graphs = [await graphFileFor(dir, 'encoder', 'int4'), 'decoder_init.int4.onnx', 'decoder_step.int4.onnx'].join(',');
  const { stdout } = await run(process.execPath, [PROBE, '--model-dir', dir, '--graphs', graphs, '--step'], { maxBuffer: 16 << 20 });
  return JSON.parse(stdout);
}

async function stepMs(): Promise<number> {
  const s = await ort.InferenceSession.create(join(dir, 'decoder_step.int4.onnx'), sessionOptions);
  try {
    const feeds = await stepFeeds(dir, 200);
    for (let i = 0; i < 3; i++) await s.run(feeds);
    const ms: number[] = [];
    for (let i = 0; i < rounds; i++) { const t = performance.now(); await s.run(feeds); ms.push(performance.now() - t); }
    return median(ms);
  } finally {
    await s.release();
  }
}

/** Each encoder recipe of --encoder-specs, written under --out (quantize's own transform and selector). */
async function encoderVariants(): Promise<{ spec: string; path: string }[]> {
  const out: { spec: string; path: string }[] = [];
  for (const [i, spec] of f.encoderSpecs.split(';').entries()) {
    const d = join(resolve(f.out), `encoder-${i}`);
    await mkdir(d, { recursive: true });
    const path = join(d, 'encoder.onnx');
    await transformGraphs({
      graphs: [{ src: join(dir, 'encoder.onnx'), dst: path }], dataFile: join(d, 'encoder.data'), fuse: false, skipFusion: false, pack: true,
      quantize: { ...BASE_DEFAULTS, exclude: [] }, select: recipeSelector(resolveRecipe('whole', { encoder: spec })),
    });
    out.push({ spec, path });
  }
  return out;
}

/** Encoder ms per audio second, fp32 vs each recipe, all loaded, runs alternated. */
async function encoderSpeed(): Promise<Record<string, unknown>> {
  const seconds = Number(f.audioSeconds);
  const frames = seconds * 100;
  const rng = new Prng(3);
  const mel = new ort.Tensor('float32', Float32Array.from({ length: 128 * frames }, () => rng.next() * 2 - 1), [1, 128, frames]);
  const variants = [{ spec: 'fp32', path: join(dir, 'encoder.onnx') }, ...(await encoderVariants())];
  const sessions: ort.InferenceSession[] = [];
  try {
    for (const v of variants) { sessions.push(await ort.InferenceSession.create(v.path, sessionOptions)); await sessions[sessions.length - 1].run({ mel }); }
    const t = variants.map(() => [] as number[]);
    for (let i = 0; i < rounds; i++) {
      for (const [k, s] of sessions.entries()) { const a = performance.now(); await s.run({ mel }); t[k].push(performance.now() - a); }
    }
    return { audioSeconds: seconds, msPerAudioSecond: Object.fromEntries(variants.map((v, k) => [v.spec, median(t[k]) / seconds])) };
  } finally {
    for (const s of sessions) await s.release();
  }
}

const results: Record<string, unknown>[] = [];
let encoder: Record<string, unknown> | null = null;
for (const preset of f.presets.split(',')) {
  for (const share of preset === 'whole' ? f.shares.split(',') : ['range']) {
    const label = preset === 'whole' ? `${preset}-${share}` : preset;
    process.stderr.write(`quantize ${label}\n`);
    const q = await timeVerbose([process.execPath, CLI, 'quantize', '--model-dir', dir, '--preset', preset, '--table-share', share, '--quiet']);
    const row: Record<string, unknown> = { label, quantize: { wallSeconds: q.wallSeconds, peakRssMiB: q.peakRssMiB }, ...(await sizes()) };
    if (f.package) { process.stderr.write(`package ${label}\n`); row.package = await packageSize(label); }
    process.stderr.write(`probe ${label}\n`);
    row.memory = await probe();
    row.stepMsAt200 = await stepMs();
    if (preset === 'whole' && !encoder) { process.stderr.write('encoder speed\n'); encoder = await encoderSpeed(); }
    results.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
}
await rm(resolve(f.out), { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ modelDir: dir, threads, rounds, encoder, results }, null, 1)}\n`);
