import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, debrisIn, oneLineError, runCli, snapshotTree, treeChanges, type CliRun } from '../fixtures/hostile-support.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { encodeWav, riff } from './wav-writer.js';

/**
 * Hostile audio input to `transcribe` and `wer`, run through the built CLI as a user would:
 * each bad file gets a one-line error naming it, nothing is written or left behind, and in a
 * batch the other files still run (non-zero exit at the end).
 */

const SHORT = fileURLToPath(new URL('../../shared/audio/notld/5s_dont_worry_about_him.wav', import.meta.url));
const FAST = ['--max-new-tokens', '2', '--threads', '1'];

let modelDir: string;
let scratch: string;
let sparse: string;
beforeAll(async () => {
  modelDir = await tinyModelDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-audio-hostile-'));
  sparse = await mkdtemp(join(tmpdir(), 'qwen3-audio-sparse-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await rm(sparse, { recursive: true, force: true });
});

function fmtBody(code: number, channels: number, rate: number, bits: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, code, true);
  v.setUint16(2, channels, true);
  v.setUint32(4, rate >>> 0, true);
  v.setUint32(8, (rate * channels * (bits / 8)) >>> 0, true);
  v.setUint16(12, channels * (bits / 8), true);
  v.setUint16(14, bits, true);
  return b;
}

/** Resolves when a child has exited (listening from the start, so an early exit is not missed). */
function ended(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => { child.on('close', () => resolve()); });
}

const tone = (n: number, rate: number): Float64Array => Float64Array.from({ length: n }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 220 * i) / rate));

/** Runs transcribe on `files` and checks that neither the scratch folder nor the model changed. */
async function transcribeUnchanged(files: string[], extra: string[] = []): Promise<CliRun> {
  const before = snapshotTree(scratch);
  const model = snapshotTree(modelDir);
  const run = await runCli(['transcribe', '--model-dir', modelDir, ...FAST, ...extra, ...files]);
  expect(treeChanges(before, snapshotTree(scratch))).toEqual([]);
  expect(treeChanges(model, snapshotTree(modelDir))).toEqual([]);
  expect(debrisIn(scratch)).toEqual([]);
  return run;
}

async function craft(name: string, bytes: Uint8Array): Promise<string> {
  const file = join(scratch, name);
  await writeFile(file, bytes);
  return file;
}

describe('transcribe refuses hostile WAV files with one line naming the file', () => {
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['a truncated RIFF header', () => new TextEncoder().encode('RIFF\x24\x00\x00'), /^\S+truncated-header\.wav: not a WAV file \(expected a RIFF\/WAVE header/],
    ['a header cut inside fmt', () => new TextEncoder().encode('RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00'), /cut-fmt\.wav: truncated: "fmt " chunk declares 16 bytes but only 2 remain$/],
    ['a data chunk declaring 4 GB', () => riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16) }, { id: 'data', body: new Uint8Array(64), declaredSize: 0xfffffff0 }]),
      /huge-data\.wav: truncated: data chunk declares 4294967280 bytes but only 64 remain$/],
    ['a 4 GB fmt chunk', () => riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16), declaredSize: 0xfffffff0 }]), /huge-fmt\.wav: truncated: "fmt " chunk declares 4294967280 bytes/],
    ['1e9 Hz', () => riff([{ id: 'fmt ', body: fmtBody(1, 1, 1e9, 16) }, { id: 'data', body: new Uint8Array(64) }]), /rate-1e9\.wav: sample rate 1000000000 Hz is outside the supported 1000-384000 Hz$/],
    ['999 Hz', () => riff([{ id: 'fmt ', body: fmtBody(1, 1, 999, 16) }, { id: 'data', body: new Uint8Array(64) }]), /rate-999\.wav: sample rate 999 Hz is outside the supported 1000-384000 Hz$/],
    ['0 channels', () => riff([{ id: 'fmt ', body: fmtBody(1, 0, 16000, 16) }, { id: 'data', body: new Uint8Array(64) }]), /zero-channels\.wav: zero channels$/],
    ['float16 samples', () => riff([{ id: 'fmt ', body: fmtBody(3, 1, 16000, 16) }, { id: 'data', body: new Uint8Array(64) }]), /float16\.wav: unsupported bit depth 16 for float audio/],
    ['NaN samples', () => encodeWav({ sampleRate: 16000, channels: [Float64Array.from({ length: 8000 }, (_, i) => (i === 4000 ? NaN : 0))], encoding: 'float32' }),
      /nan\.wav: contains NaN or infinite samples$/],
  ];
  const names = ['truncated-header.wav', 'cut-fmt.wav', 'huge-data.wav', 'huge-fmt.wav', 'rate-1e9.wav', 'rate-999.wav', 'zero-channels.wav', 'float16.wav', 'nan.wav'];
  cases.forEach(([what, bytes, message], i) => {
    it(what, async () => {
      const file = await craft(names[i], bytes());
      const run = await transcribeUnchanged([file]);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      const line = oneLineError(run);
      expect(line).toContain(file);
      expect(line).toMatch(message);
    });
  });

  it('/dev/zero: refused from its first 12 bytes', async () => {
    const run = await transcribeUnchanged(['/dev/zero']);
    expect(run.code).toBe(1);
    expect(oneLineError(run)).toBe('/dev/zero: not a WAV file (expected a RIFF/WAVE header; only WAV audio is supported)');
  });

  it('an 8 GiB file of zeros, and one with a WAV header and an 8 GiB data chunk (sparse), are refused before reading', async () => {
    // Beside the scratch folder: snapshotTree would read all 8 GiB of each.
    const zeros = join(sparse, 'zeros.wav');
    const headed = join(sparse, 'headed.wav');
    for (const [file, head] of [[zeros, new Uint8Array(0)], [headed, riff([{ id: 'fmt ', body: fmtBody(1, 1, 16000, 16) }, { id: 'data', body: new Uint8Array(0), declaredSize: 0xffffffff }])]] as const) {
      const fd = openSync(file, 'w');
      writeSync(fd, head);
      ftruncateSync(fd, 8 * 1024 ** 3);
      closeSync(fd);
    }
    const a = await transcribeUnchanged([zeros]);
    expect(oneLineError(a)).toMatch(/zeros\.wav: not a WAV file/);
    // "until the end of the file" in an 8 GiB file is 74 hours of 16 kHz PCM16.
    const b = await transcribeUnchanged([headed]);
    expect(oneLineError(b)).toMatch(/headed\.wav: audio is 74 h 33 min long; the limit is 3 h 00 min per file \(split it first\)$/);
    expect(a.code).toBe(1);
    expect(b.code).toBe(1);
    expect(readdirSync(sparse).sort()).toEqual(['headed.wav', 'zeros.wav']);
    expect([statSync(zeros).size, statSync(headed).size]).toEqual([8 * 1024 ** 3, 8 * 1024 ** 3]);
  });

  it('a directory and a missing file', async () => {
    const dir = await transcribeUnchanged([scratch]);
    expect(oneLineError(dir)).toBe(`cannot read audio ${scratch}: is a directory`);
    const missing = await transcribeUnchanged([join(scratch, 'nope.wav')]);
    expect(oneLineError(missing)).toBe(`cannot read audio ${join(scratch, 'nope.wav')}: no such file or directory`);
  });

  it('a FIFO: a WAV streamed through it is transcribed; endless zeros are refused at once', async () => {
    const fifo = join(scratch, 'pipe.wav');
    execFileSync('mkfifo', [fifo]);
    try {
      const expected = await runCli(['transcribe', '--model-dir', modelDir, ...FAST, SHORT]);
      expect(expected.code).toBe(0);
      const writer = ended(spawn('sh', ['-c', 'cat "$0" > "$1"', SHORT, fifo], { stdio: 'ignore' }));
      const streamed = await runCli(['transcribe', '--model-dir', modelDir, ...FAST, fifo]);
      await writer;
      expect(streamed.stderr).toBe('');
      expect(streamed.stdout).toBe(expected.stdout);

      const zeros = ended(spawn('sh', ['-c', 'cat /dev/zero > "$0"', fifo], { stdio: 'ignore' }));
      const refused = await runCli(['transcribe', '--model-dir', modelDir, ...FAST, fifo]);
      // The writer ends with SIGPIPE once the reader has closed the pipe.
      await zeros;
      expect(refused.code).toBe(1);
      expect(oneLineError(refused)).toBe(`${fifo}: not a WAV file (expected a RIFF/WAVE header; only WAV audio is supported)`);
    } finally {
      await rm(fifo, { force: true });
    }
  });
});

describe('transcribe reads every sample format the reader supports', () => {
  it('PCM 8/16/24/32 and float 32/64, mono and stereo, 8-48 kHz, all transcribe', async () => {
    const files: string[] = [];
    for (const [encoding, rate, channels] of [['pcm8', 8000, 1], ['pcm16', 22050, 2], ['pcm24', 44100, 1], ['pcm32', 48000, 2], ['float32', 16000, 1], ['float64', 32000, 2]] as const) {
      const x = tone(rate, rate);
      files.push(await craft(`ok-${encoding}.wav`, encodeWav({ sampleRate: rate, channels: channels === 1 ? [x] : [x, x], encoding })));
    }
    const run = await transcribeUnchanged(files, ['--json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as { files: { file: string; audioSeconds: number }[]; failures: unknown[] };
    expect(report.failures).toEqual([]);
    expect(report.files.map((f) => f.file)).toEqual(files);
    for (const f of report.files) expect(f.audioSeconds).toBeCloseTo(1, 3);
  });
});

describe('a bad file in a batch', () => {
  it('transcribe: is reported on its own line, the others still run, exit 1 at the end', async () => {
    const bad = await craft('batch-bad.wav', riff([{ id: 'fmt ', body: fmtBody(1, 1, 1e9, 16) }, { id: 'data', body: new Uint8Array(64) }]));
    const good = await craft('batch-good.wav', await readFile(SHORT));
    const run = await transcribeUnchanged([SHORT, bad, good]);
    expect(run.code).toBe(1);
    const lines = run.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([
      `qwen3-onnx: error: ${bad}: sample rate 1000000000 Hz is outside the supported 1000-384000 Hz`,
      'qwen3-onnx: error: 1 of 3 files failed (see the lines above)',
    ]);
    const out = run.stdout.split('\n').filter(Boolean);
    expect(out.length).toBe(2);
    expect(out[0].startsWith(`${SHORT}: `)).toBe(true);
    expect(out[1].startsWith(`${good}: `)).toBe(true);
    // The same text for the same audio: the bad file did not disturb the run.
    expect(out[1].slice(good.length)).toBe(out[0].slice(SHORT.length));

    const json = await transcribeUnchanged([bad, good, '/dev/zero'], ['--json']);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as { files: { file: string }[]; failures: { file: string; error: string }[] };
    expect(report.files.map((f) => f.file)).toEqual([good]);
    expect(report.failures.map((f) => f.file)).toEqual([bad, '/dev/zero']);
    expect(json.stderr.split('\n').filter(Boolean).length).toBe(3);
  });

  it('wer: the bad entry is reported and left out, the rest scored, exit 1', async () => {
    const bad = await craft('wer-bad.wav', new TextEncoder().encode('RIFF'));
    const manifest = await craft('manifest.tsv', new TextEncoder().encode(`${SHORT}\tdont worry about him\n${bad}\tsomething\n${SHORT}\tdont worry about him\n`));
    const before = snapshotTree(scratch);
    const run = await runCli(['wer', '--model-dir', modelDir, ...FAST, '--manifest', manifest, '--json']);
    expect(treeChanges(before, snapshotTree(scratch))).toEqual([]);
    expect(run.code).toBe(1);
    expect(run.stderr.split('\n').filter(Boolean)).toEqual([
      `qwen3-onnx: error: ${bad}: not a WAV file (expected a RIFF/WAVE header; only WAV audio is supported)`,
      'qwen3-onnx: error: 1 of 3 files failed (see the lines above)',
    ]);
    const report = JSON.parse(run.stdout) as { files: { audio: string }[]; failures: { file: string }[]; referenceWords: number };
    expect(report.files.map((f) => f.audio)).toEqual([SHORT, SHORT]);
    expect(report.failures.map((f) => f.file)).toEqual([bad]);
    expect(report.referenceWords).toBe(8);
  });
});
