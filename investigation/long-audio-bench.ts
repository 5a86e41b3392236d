/**
 * Peak RSS of `transcribe` on long audio (entry 26 of INVESTIGATION.md).
 *
 *   npx tsc -p tsconfig.json
 *   flock /tmp/qwen3-heavy.lock node dist/investigation/long-audio-bench.js --model-dir M \
 *     [--variant int4] [--minutes 1,5,10,30] [--segments 60,1200] [--max-new-tokens 32]
 *
 * The audio is the shared clips (jfk + notld, ~9.5 min of speech) concatenated in a loop to each
 * length and written as 16 kHz PCM16 WAV into a temp folder. Every (minutes, segment length)
 * pair runs `qwen3-onnx transcribe --json` as a child under GNU /usr/bin/time -v. Prints a
 * markdown table and the JSON of every run; the temp folder is removed at the end.
 */
import { Command, InvalidArgumentError } from 'commander';
import { readdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAudio } from '../runtime/audio.js';
import { encodeWav } from '../runtime/wav-writer.js';
import { timeVerbose } from './time-verbose.js';

const AUDIO = fileURLToPath(new URL('../../../shared/audio/', import.meta.url));
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

const list = (flag: string) => (v: string): number[] => v.split(',').filter(Boolean).map((s) => {
  const n = Number(s);
  if (!(n > 0)) throw new InvalidArgumentError(`${flag} takes positive numbers, got "${s}"`);
  return n;
});

interface Row {
  minutes: number; maxSegmentSeconds: number; segments: number; longestPrefill: number;
  wallSeconds: number; peakRssMiB: number; tokens: number;
}

async function speechLoop(): Promise<Float32Array> {
  const files = [join(AUDIO, 'jfk.wav'), ...(await readdir(join(AUDIO, 'notld'))).filter((f) => f.endsWith('.wav')).sort().map((f) => join(AUDIO, 'notld', f))];
  const parts = await Promise.all(files.map(async (f) => (await loadAudio(f)).samples));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function writeLongWav(loop: Float32Array, minutes: number, file: string): Promise<void> {
  const n = Math.round(minutes * 60 * 16000);
  const x = new Float64Array(n);
  for (let i = 0; i < n; i += 1) x[i] = loop[i % loop.length];
  await writeFile(file, encodeWav({ sampleRate: 16000, channels: [x], encoding: 'pcm16' }));
}

async function main(): Promise<void> {
  const opts = new Command()
    .requiredOption('--model-dir <dir>', 'model directory')
    .option('--variant <v>', 'fp32 or int4', 'fp32')
    .option('--minutes <list>', 'audio lengths', list('--minutes'), [1, 5, 10, 30])
    .option('--segments <list>', '--max-segment-seconds values', list('--segments'), [60])
    .option('--max-new-tokens <n>', 'per segment', '512')
    .option('--threads <n>', 'onnxruntime intra-op threads', '2')
    .option('--skip <pairs>', 'minutes:segment pairs to leave out (too big for the machine), e.g. 30:1200', '')
    .parse()
    .opts<{ modelDir: string; variant: string; minutes: number[]; segments: number[]; maxNewTokens: string; threads: string; skip: string }>();
  const skip = new Set(opts.skip.split(',').filter(Boolean));
  const dir = await mkdtemp(join(tmpdir(), 'qwen3-long-audio-'));
  const rows: Row[] = [];
  const started = Date.now();
  const loadStart = loadavg()[0];
  try {
    const loop = await speechLoop();
    process.stderr.write(`speech loop: ${(loop.length / 16000).toFixed(1)} s\n`);
    for (const minutes of opts.minutes) {
      const file = join(dir, `${minutes}min.wav`);
      await writeLongWav(loop, minutes, file);
      for (const seg of opts.segments) {
        if (skip.has(`${minutes}:${seg}`)) continue;
        const run = await timeVerbose([process.execPath, CLI, 'transcribe', '--model-dir', opts.modelDir, '--variant', opts.variant,
          '--max-new-tokens', opts.maxNewTokens, '--threads', opts.threads, '--max-segment-seconds', String(seg), '--json', file]);
        const report = JSON.parse(run.stdout) as { files: { tokens: number[]; segments: { promptTokens: number }[] }[] };
        const f = report.files[0];
        const row: Row = {
          minutes, maxSegmentSeconds: seg, segments: f.segments.length,
          longestPrefill: Math.max(...f.segments.map((s) => s.promptTokens)),
          wallSeconds: run.wallSeconds, peakRssMiB: run.peakRssMiB, tokens: f.tokens.length,
        };
        rows.push(row);
        process.stderr.write(`${JSON.stringify(row)}\n`);
      }
      await rm(file, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const lines = [
    `model ${opts.modelDir} (${opts.variant}), --max-new-tokens ${opts.maxNewTokens}, --threads ${opts.threads}; ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}; load ${loadStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at end; ${Math.round((Date.now() - started) / 1000)} s`,
    '',
    '| audio | --max-segment-seconds | segments | longest prefill (tokens) | generated tokens | wall s | peak RSS MiB |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.minutes} min | ${r.maxSegmentSeconds} | ${r.segments} | ${r.longestPrefill} | ${r.tokens} | ${r.wallSeconds.toFixed(1)} | ${r.peakRssMiB} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n${JSON.stringify(rows)}\n`);
}

await main();
