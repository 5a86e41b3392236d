import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportModel } from '../graph-builder/export.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import { oneLineError, runCli, snapshotTree, treeChanges } from '../fixtures/hostile-support.js';
import { readTarGz } from './archive-reader.js';
import type { PackageManifest } from './manifest.js';
import { modelCard } from './model-card.js';

/**
 * The sherpa-onnx layout through package and verify-package: the archive unpacks to a folder a
 * sherpa-onnx user points at directly (graphs, data, tokenizer/, a README with the command line),
 * and a broken directory is refused in one line with nothing written.
 */
describe('sherpa-onnx layout archives', () => {
  let root: string;
  let model: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'qwen3-onnx-sherpa-pkg-'));
    model = join(root, 'model');
    await exportModel({ model: await tinyCheckpointDir(), output: model, layout: 'sherpa-onnx' });
  }, 120_000);

  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('package names the archive for the layout; it holds the folder sherpa loads and verify-package passes it', async () => {
    const out = join(root, 'dist');
    const run = await runCli(['package', '--model-dir', model, '--variant', 'fp32', '--output', out, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const name = 'qwen3-asr-custom-sherpa-onnx-fp32';
    expect((await readdir(out)).sort()).toEqual(['SHA256SUMS', `${name}.manifest.json`, `${name}.tar.gz`]);
    const members: string[] = [];
    let readme = '';
    await readTarGz(join(out, `${name}.tar.gz`), (h) => {
      members.push(h.name);
      if (h.name !== `${name}/README.md`) return null;
      const parts: Uint8Array[] = [];
      return { data(c) { parts.push(Uint8Array.from(c)); }, end() { readme = Buffer.concat(parts).toString('utf8'); } };
    });
    expect(members.sort()).toEqual([
      `${name}`,
      ...['README.md', 'config.json', 'conv_frontend.data', 'conv_frontend.onnx', 'decoder.data', 'decoder.onnx', 'encoder.data',
        'encoder.onnx', 'manifest.json', 'tokenizer/merges.txt', 'tokenizer/tokenizer_config.json', 'tokenizer/vocab.json'].map((f) => `${name}/${f}`),
    ].sort());
    expect(readme).toContain(`--qwen3-asr-decoder=${name}/decoder.onnx`);
    expect(readme).toContain(`--qwen3-asr-tokenizer=${name}/tokenizer`);
    expect(readme).toContain("require('sherpa-onnx-node')");
    const manifest = JSON.parse(await readFile(join(out, `${name}.manifest.json`), 'utf8')) as PackageManifest;
    const card = modelCard([manifest]);
    expect(card).toContain(`--qwen3-asr-decoder=${name}/decoder.onnx`);
    expect(card).toContain('sherpa-onnx');
    const verify = await runCli(['verify-package', join(out, `${name}.tar.gz`)]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toContain('OK ');
  }, 120_000);

  it('build --layout sherpa-onnx exports, quantises, gates and packages that layout', async () => {
    const out = join(root, 'build');
    const run = await runCli(['build', '--model', await tinyCheckpointDir(), '--output', out, '--layout', 'sherpa-onnx',
      '--variants', 'fp32,int4', '--min-top1', '0', '--min-cosine', '0', '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['build-record.json', 'dist', 'model-sherpa-onnx']);
    const dist = (await readdir(join(out, 'dist'))).filter((f) => f.endsWith('.tar.gz')).sort();
    expect(dist).toEqual(['qwen3-asr-custom-sherpa-onnx-fp32.tar.gz', 'qwen3-asr-custom-sherpa-onnx-int4.tar.gz']);
    const record = JSON.parse(await readFile(join(out, 'build-record.json'), 'utf8')) as { options: { layouts: string[] }; comparisons: unknown[] };
    expect(record.options.layouts).toEqual(['sherpa-onnx']);
    expect(record.comparisons.length).toBe(1);
    expect(await readFile(join(out, 'dist', 'README.md'), 'utf8')).toContain('--qwen3-asr-decoder=qwen3-asr-custom-sherpa-onnx-');
  }, 180_000);

  /** A copy of the exported directory with one thing broken; package must refuse it in one line and write nothing. */
  const broken = async (what: string, breakIt: (dir: string) => Promise<void>): Promise<{ message: string; dir: string }> => {
    const dir = join(root, `broken-${what}`);
    await cp(model, dir, { recursive: true });
    await breakIt(dir);
    const out = join(root, `out-${what}`);
    const before = snapshotTree(dir);
    const run = await runCli(['package', '--model-dir', dir, '--variant', 'fp32', '--output', out]);
    expect(run.code).not.toBe(0);
    expect(treeChanges(before, snapshotTree(dir))).toEqual([]);
    await expect(readdir(out)).rejects.toThrow();
    return { message: oneLineError(run), dir };
  };

  it('a directory missing one of its files is named', async () => {
    const { message } = await broken('no-merges', (d) => rm(join(d, 'tokenizer', 'merges.txt')));
    expect(message).toMatch(/tokenizer\/merges\.txt: missing/);
    const noDecoder = await broken('no-decoder', (d) => rm(join(d, 'decoder.onnx')));
    expect(noDecoder.message).toMatch(/decoder\.onnx is missing/);
  }, 60_000);

  it('a decoder whose cache inputs do not match config.json num_layers is refused', async () => {
    const { message } = await broken('layers', async (d) => {
      const path = join(d, 'config.json');
      const config = JSON.parse(await readFile(path, 'utf8')) as { decoder: { num_layers: number } };
      config.decoder.num_layers += 1;
      await writeFile(path, `${JSON.stringify(config, null, 2)}\n`);
    });
    expect(message).toMatch(/decoder\.onnx: \d+ inputs, but config\.json decoder\.num_layers \d+ needs \d+/);
  }, 60_000);

  it('a tokenizer folder without <asr_text> is refused (sherpa-onnx exits on it)', async () => {
    const { message } = await broken('no-asr-text', async (d) => {
      const path = join(d, 'tokenizer', 'tokenizer_config.json');
      const cfg = JSON.parse(await readFile(path, 'utf8')) as { added_tokens_decoder: Record<string, { content: string }> };
      for (const [id, t] of Object.entries(cfg.added_tokens_decoder)) if (t.content === '<asr_text>') delete cfg.added_tokens_decoder[id];
      await writeFile(path, JSON.stringify(cfg, null, 2));
    });
    expect(message).toMatch(/tokenizer.*asr_text/);
  }, 60_000);
});
