import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyModelDir, tinyExportedModelDir } from './test-support.js';
import { runCli } from '../fixtures/hostile-support.js';

const AUDIO = resolve(dirname(fileURLToPath(import.meta.url)), '../../shared/audio');

/**
 * The built CLI (npm test builds first), run as a user would. Asynchronous: a synchronous spawn
 * blocks the vitest worker, whose RPC to the main process then times out on a slow box.
 */
async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await runCli(args, { env: { ...process.env, CI: '1' } });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

let model: { dir: string; cleanup: () => Promise<void> };
let stats: string;
let badWav: string;
let notWav: string;
beforeAll(async () => {
  model = await copyModelDir(await tinyExportedModelDir());
  stats = join(model.dir, '..', 'stats.json');
  badWav = join(model.dir, '..', 'bad.wav');
  notWav = join(model.dir, '..', 'not-a.wav');
  await writeFile(badWav, Buffer.from('RIFF\x10\x00\x00\x00WAVEfmt ', 'latin1')); // header cut inside fmt
  await writeFile(notWav, 'plain text, not audio');
});
afterAll(async () => { await model?.cleanup(); });

describe('qwen3-onnx calibrate / quantize --awq', () => {
  it('calibrate --help describes the command', async () => {
    const r = await cli(['calibrate', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--audio <file\|dir\.\.\.>/);
    expect(r.stdout).toMatch(/--max-new-tokens <n>/);
  });

  it('calibrates on a clip, then quantizes with --awq (default alpha 0.2)', async () => {
    const c = await cli(['calibrate', '--model-dir', model.dir, '--audio', join(AUDIO, 'jfk.wav'), '--max-new-tokens', '2', '--output', stats, '--json']);
    expect(c.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(JSON.parse(c.stdout)).toMatchObject({ output: stats, files: 1, norms: 7, decodePositions: 1 });
    expect(JSON.parse(await readFile(stats, 'utf8')).format).toBe('qwen3-onnx-activation-stats');

    const q = await cli(['quantize', '--model-dir', model.dir, '--awq', stats, '--awq-alpha', '0.5']);
    expect(q.stderr).toBe('');
    expect(q.code).toBe(0);
    expect(q.stdout).toMatch(/\(int4_awq0\.5_rtn_block64_al4\)/);
    expect(q.stdout).toMatch(/AWQ alpha 0\.5: 7 norms, 16 weights smoothed, scales [\d.]+\.\.[\d.]+; own smoothed copy for thinker\.model\.embed_tokens\.weight -> thinker\.lm_head\.weight/);

    const d = await cli(['quantize', '--model-dir', model.dir, '--awq', stats, '--json']);
    expect(d.code).toBe(0);
    expect(JSON.parse(d.stdout).recipe).toBe('int4_awq0.2_rtn_block64_al4');
  });

  const bad: [string, string[], RegExp][] = [
    ['--awq-alpha without --awq', ['quantize', '--model-dir', '.', '--awq-alpha', '0.3'], /--awq-alpha needs --awq <stats\.json>/],
    ['an alpha above 1', ['quantize', '--model-dir', 'MODEL', '--awq', 'STATS', '--awq-alpha', '2'], /--awq-alpha must be a number from 0 to 1, got 2/],
    ['an alpha that is not a number', ['quantize', '--model-dir', '.', '--awq', 'x', '--awq-alpha', 'abc'], /--awq-alpha must be a number, got "abc"/],
    ['a missing stats file', ['quantize', '--model-dir', 'MODEL', '--awq', '/nonexistent/stats.json'], /cannot read \/nonexistent\/stats\.json: no such file or directory/],
    ['calibrate without audio files', ['calibrate', '--model-dir', 'MODEL', '--audio', '/nonexistent.wav', '--output', '/tmp/x.json'], /--audio: cannot read \/nonexistent\.wav/],
    ['calibrate on a set with two unreadable files (both named, before any model work)',
      ['calibrate', '--model-dir', 'MODEL', '--audio', 'BADWAV', `${AUDIO}/jfk.wav`, 'NOTWAV', '--output', '/tmp/x.json'],
      /^qwen3-onnx: error: 2 of 3 audio files cannot be read: .*bad\.wav: .*; .*not-a\.wav: .*$/m],
  ];
  it.each(bad)('refuses %s with a one-line error', async (_what, args, message) => {
    const r = await cli(args.map((a) => (a === 'MODEL' ? model.dir : a === 'STATS' ? stats : a === 'BADWAV' ? badWav : a === 'NOTWAV' ? notWav : a)));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
