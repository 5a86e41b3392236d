/**
 * Full-size forced-aligner bench (issue 16): a synthetic Qwen3-ForcedAligner-0.6B checkpoint
 * (`fixtures --preset aligner-0.6b`) through export -> quantize (the aligner's default: whole model
 * int4, head int8) -> package int4, timing each step and reading its peak RSS (GNU time), then the
 * archive and unpacked sizes, and one aligner forward pass (encoder + aligner_decoder) for an 11 s
 * and a 60 s input in fp32 and int4 (time and peak RSS of a child process each).
 *
 * Heavy: run it alone, under the shared lock, from a built tree:
 *   flock /tmp/qwen3-heavy.lock node dist/investigation/aligner-bench.js --work /tmp/aligner-bench [--keep]
 * Prints one JSON object (the figures for investigation/INVESTIGATION.md).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { alignerGraphFileName } from '../model-dir/aligner.js';
import { alignerPromptIds } from '../runtime/aligner-compare.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const CLI = resolve(HERE, '..', 'cli', 'main.js');

interface Step { step: string; seconds: number; peakRssMiB: number }

/** Runs `node <args>` under GNU time; returns wall seconds and peak RSS. Throws on failure. */
function timed(step: string, args: string[]): Step {
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${step} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(r.stderr);
  const seconds = wall ? Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]) : NaN;
  return { step, seconds, peakRssMiB: rss ? Number(rss[1]) / 1024 : NaN };
}

const dirBytes = (dir: string, keep: (name: string) => boolean = () => true): number =>
  readdirSync(dir).filter(keep).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

/** Child mode: one forward pass; prints {ms} (the parent reads the RSS). */
async function forwardPass(dir: string, variant: string, seconds: number): Promise<void> {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2 };
  const enc = await ort.InferenceSession.create(join(dir, alignerGraphFileName('encoder', variant)), opts);
  const dec = await ort.InferenceSession.create(join(dir, alignerGraphFileName('aligner_decoder', variant)), opts);
  const frames = seconds * 100;
  const rng = new Prng(seconds);
  const mel = Float32Array.from({ length: 128 * frames }, () => rng.next() * 2.5 - 1);
  const t0 = performance.now();
  const audio = (await enc.run({ mel: new ort.Tensor('float32', mel, [1, 128, frames]) })).audio_features;
  // About 2.7 words per second of speech, as in a read-speech clip.
  const ids = alignerPromptIds(rng, audio.dims[1], Math.round(seconds * 2.7));
  const t1 = performance.now();
  await dec.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]), audio_features: audio });
  const t2 = performance.now();
  console.log(JSON.stringify({ encoderMs: t1 - t0, decoderMs: t2 - t1, tokens: ids.length }));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--forward') { await forwardPass(argv[1], argv[2], Number(argv[3])); return; }
  const work = resolve(argv[argv.indexOf('--work') + 1] ?? '/tmp/aligner-bench');
  const keep = argv.includes('--keep');
  const ckpt = join(work, 'checkpoint');
  const model = join(work, 'model');
  const dist = join(work, 'dist');
  mkdirSync(work, { recursive: true });
  const steps: Step[] = [];
  if (!existsSync(join(ckpt, 'model.safetensors'))) steps.push(timed('fixtures', [CLI, 'fixtures', '--preset', 'aligner-0.6b', '--output', ckpt, '--quiet']));
  rmSync(model, { recursive: true, force: true });
  rmSync(dist, { recursive: true, force: true });
  steps.push(timed('export', [CLI, 'export', '--model', ckpt, '--output', model, '--quiet']));
  const fp32Bytes = dirBytes(model, (f) => /\.(onnx|data)$/.test(f));
  steps.push(timed('quantize', [CLI, 'quantize', '--model-dir', model, '--quiet']));
  steps.push(timed('package int4', [CLI, 'package', '--model-dir', model, '--variant', 'int4', '--output', dist, '--quiet']));
  const archive = readdirSync(dist).find((f) => f.endsWith('-int4.tar.gz'));
  if (!archive) throw new Error(`no int4 archive in ${dist}`);
  const int4Files = readdirSync(model).filter((f) => /\.int4\.(onnx|data)$/.test(f));
  const int4Bytes = int4Files.reduce((n, f) => n + statSync(join(model, f)).size, 0);
  const forward: Array<Step & { variant: string; audioSeconds: number; encoderMs: number; decoderMs: number; tokens: number }> = [];
  for (const variant of ['fp32', 'int4']) {
    for (const audioSeconds of [11, 60]) {
      const r = spawnSync('/usr/bin/time', ['-v', process.execPath, fileURLToPath(import.meta.url), '--forward', model, variant, String(audioSeconds)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`forward ${variant} ${audioSeconds}s failed:\n${r.stderr}`);
      const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { encoderMs: number; decoderMs: number; tokens: number };
      forward.push({ step: 'forward', seconds: (out.encoderMs + out.decoderMs) / 1000, peakRssMiB: rss, variant, audioSeconds, ...out });
    }
  }
  console.log(JSON.stringify({
    steps, fp32GraphBytes: fp32Bytes, int4GraphBytes: int4Bytes, int4Files,
    archive: { name: archive, bytes: statSync(join(dist, archive)).size }, forward,
  }, null, 2));
  if (!keep) { rmSync(model, { recursive: true, force: true }); rmSync(dist, { recursive: true, force: true }); }
}

await main();
