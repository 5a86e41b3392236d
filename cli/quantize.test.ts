import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/test-support.js';

/** The built CLI (npm test builds first), run as a user would. */
const MAIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, 'quantize', ...args], { encoding: 'utf8', env: { ...process.env, CI: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
beforeAll(async () => {
  const src = await tinyModelDir();
  dir = await mkdtemp(join(tmpdir(), 'qwen3-onnx-cli-quantize-'));
  for (const f of ['encoder.onnx', 'encoder_weights.data', 'decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'config.json']) await copyFile(join(src, f), join(dir, f));
}, 300_000);
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('qwen3-onnx quantize', () => {
  it('quantises a model directory and reports in JSON', async () => {
    const r = cli(['--model-dir', dir, '--json', '--threads', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.recipe).toBe('int4_rtn_block64_al4');
    expect(out.files).toEqual(['decoder_init.int4.onnx', 'decoder_step.int4.onnx', 'decoder_weights.int4.data', 'config.json']);
    expect(out.report.graphs.map((g: { quantization: { quantized: unknown[] } }) => g.quantization.quantized.length)).toEqual([22, 22]);
    // Packing is the default: q|k|v and gate|up of each of the 3 layers.
    expect(out.report.graphs.map((g: { packing: { packed: unknown[] } }) => g.packing.packed.length)).toEqual([6, 6]);
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect(cfg.quantization).toEqual({
      decoder_init: 'int4_rtn_block64_al4', decoder_step: 'int4_rtn_block64_al4',
      embedding: 'fp32', encoder: 'fp32', lm_head: 'int4_rtn_block64_al4', preset: 'decoders',
    });
  });

  it('--bits 8 --symmetric --block-size 32 --accuracy-level 0 names the int8 files and recipe', async () => {
    const r = cli(['--model-dir', dir, '--bits', '8', '--symmetric', '--block-size', '32', '--accuracy-level', '0', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.files.slice(0, 3)).toEqual(['decoder_init.int8.onnx', 'decoder_step.int8.onnx', 'decoder_weights.int8.data']);
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect(cfg.quantization).toEqual({
      decoder_init: 'int4_rtn_block64_al4', 'decoder_init.int8': 'int8_rtn_block32_al0_sym',
      decoder_step: 'int4_rtn_block64_al4', 'decoder_step.int8': 'int8_rtn_block32_al0_sym',
      embedding: 'fp32', 'embedding.int8': 'fp32', encoder: 'fp32', 'encoder.int8': 'fp32',
      lm_head: 'int4_rtn_block64_al4', 'lm_head.int8': 'int8_rtn_block32_al0_sym', preset: 'decoders', 'preset.int8': 'decoders',
    });
  });

  it('--preset whole with per-component overrides writes the int4 encoder and states the recipe it ran', async () => {
    const r = cli(['--model-dir', dir, '--preset', 'whole', '--encoder', 'int8,block=32', '--lm-head', 'int4,block=32', '--embedding', 'int4,block=32']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/recipe custom: encoder int8 b32 al4, decoder int4 b64 al4, embedding int4 b32, lm_head int4 b32 al4; the lookup reads the lm_head's int4 table/);
    expect(r.stdout).toMatch(/encoder\.int4\.onnx: 21 MatMul -> MatMulNBits/);
    expect(r.stdout).toMatch(/1 lookup -> GatherBlockQuantized/);
    const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect([cfg.quantization.preset, cfg.quantization.encoder, cfg.quantization.embedding, cfg.quantization.lm_head])
      .toEqual(['custom', 'int8_rtn_block32_al4', 'int4_rtn_block32_gather', 'int4_rtn_block32_al4']);
  });

  it('prints a human summary without --json', () => {
    const r = cli(['--model-dir', dir, '--no-fuse', '--exclude', '*lm_head*']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 RMSNorm fused, 21 MatMul -> MatMulNBits, 1 left in float, packed into 6 wider nodes/);
    expect(r.stdout).toMatch(/saved by de-duplication/);
  });

  it('--no-pack keeps every projection its own MatMulNBits', () => {
    const r = cli(['--model-dir', dir, '--no-pack', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.report.graphs.map((g: { packing?: unknown }) => g.packing)).toEqual([undefined, undefined]);
    expect(spawnSync(process.execPath, [MAIN, 'quantize', '--model-dir', dir, '--no-pack'], { encoding: 'utf8', env: { ...process.env, CI: '1' } }).stdout)
      .not.toMatch(/packed into/);
  });

  const bad: [string, string[], RegExp][] = [
    ['a missing directory', ['--model-dir', '/nonexistent/model'], /^qwen3-onnx: error: cannot read \/nonexistent\/model\/config\.json: no such file or directory\n$/],
    ['a block size that is not a power of two', ['--model-dir', '.', '--block-size', '48'], /--block-size must be a power of two >= 16/],
    ['an accuracy level out of range', ['--model-dir', '.', '--accuracy-level', '7'], /--accuracy-level must be 0\.\.4, got 7/],
    ['an unsupported width', ['--model-dir', '.', '--bits', '3'], /--bits.*3.*(choices|Allowed)/i],
    ['an unknown preset', ['--model-dir', '.', '--preset', 'most'], /--preset.*most.*(choices|Allowed)/i],
    ['an unknown component', ['--model-dir', '.', '--recipe', 'vision=int4'], /^qwen3-onnx: error: --recipe: unknown component "vision" \(encoder, decoder, embedding, lm_head\)\n$/],
    ['3-bit weights for a component', ['--model-dir', '.', '--encoder', 'int3'], /^qwen3-onnx: error: --encoder int3: precision must be fp32, int8 or int4, got "int3"\n$/],
    ['block 0 for a component', ['--model-dir', '.', '--lm-head', 'int4,block=0'], /^qwen3-onnx: error: --lm-head int4,block=0: block must be a power of two from 16 to 256, got 0\n$/],
    ['an unknown setting', ['--model-dir', '.', '--recipe', 'decoder=int4,group=2'], /^qwen3-onnx: error: --decoder int4,group=2: unknown setting "group=2" \(block=N, al=N, sym, asym, clip or noclip\)\n$/],
    ['a float decoder', ['--model-dir', '.', '--decoder', 'fp32'], /^qwen3-onnx: error: --decoder fp32: a quantised variant quantises the decoder/],
    ['a recipe entry without =', ['--model-dir', '.', '--recipe', 'encoder'], /^qwen3-onnx: error: --recipe encoder: expected component=spec/],
  ];
  for (const [what, args, message] of bad) {
    it(`fails with one clear line on ${what}`, () => {
      const r = cli(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }

  it('fails on an --exclude pattern that matches nothing, before writing anything', async () => {
    const before = await readFile(join(dir, 'config.json'), 'utf8');
    const r = cli(['--model-dir', dir, '--exclude', 'no_such_layer*', '--block-size', '128']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe('qwen3-onnx: error: --exclude no_such_layer* matches no quantisable MatMul/Gemm node or weight name\n');
    expect(await readFile(join(dir, 'config.json'), 'utf8')).toBe(before);
  });
});
