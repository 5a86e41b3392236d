import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { OutputConfigSchema } from '../model-dir/config.js';
import { openCheckpoint } from '../checkpoint/open-checkpoint.js';
import { sha256File } from '../common/hash.js';
import { f16ToF32 } from '../common/float16.js';
import type { Progress } from '../common/progress.js';
import { tinyCheckpointDir, tinyModelDir } from '../fixtures/test-support.js';
import { EMBED_TOKENS } from './decoder.js';
import { exportModel } from './export.js';
import { ExportRecordSchema } from '../model-dir/export-record.js';
import { decodeModel } from '../common/onnx/index.js';
import type { ModelProto } from '../common/onnx/index.js';
import { WEIGHT_ALIGNMENT } from './weight-store.js';

const run = promisify(execFile);
const REPO = resolve(import.meta.dirname, '..');

interface ExternalRef { name: string; location: string; offset: number; length: number }

function externalRefs(m: ModelProto): ExternalRef[] {
  return (m.graph?.initializer ?? []).filter((t) => t.dataLocation === 1).map((t) => {
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    return { name: t.name ?? '', location: kv.location ?? '', offset: Number(kv.offset), length: Number(kv.length) };
  });
}

async function readRegion(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, offset);
    return buf;
  } finally {
    await fh.close();
  }
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'qwen3-export-'));
  try { return await fn(dir); } finally { await rm(dir, { recursive: true, force: true }); }
}

describe('export of the tiny checkpoint', () => {
  let modelDir: string;
  let ckptDir: string;
  let init: ModelProto;
  let step: ModelProto;

  beforeAll(async () => {
    ckptDir = await tinyCheckpointDir();
    modelDir = await tinyModelDir();
    init = decodeModel(await readFile(join(modelDir, 'decoder_init.onnx')));
    step = decodeModel(await readFile(join(modelDir, 'decoder_step.onnx')));
  });

  it('stores every decoder weight once in decoder_weights.data, shared by both graphs', async () => {
    const dataPath = join(modelDir, 'decoder_weights.data');
    const initRefs = externalRefs(init);
    const stepRefs = externalRefs(step);
    expect(initRefs.length).toBeGreaterThan(10);
    for (const r of [...initRefs, ...stepRefs]) expect(r.location).toBe('decoder_weights.data');
    // Both graphs reference the same bytes for the same name; step needs a subset of init's.
    const byName = new Map(initRefs.map((r) => [r.name, r]));
    for (const r of stepRefs) expect(byName.get(r.name), r.name).toEqual(r);
    // No region shared by two names, no content stored twice, and nothing else in the file.
    const offsets = new Set(initRefs.map((r) => r.offset));
    expect(offsets.size).toBe(initRefs.length);
    const hashes = new Map<string, string>();
    let end = 0;
    for (const r of initRefs) {
      expect(r.offset % WEIGHT_ALIGNMENT).toBe(0);
      const h = createHash('sha256').update(await readRegion(dataPath, r.offset, r.length)).digest('hex');
      expect(hashes.get(h), `${r.name} duplicates ${hashes.get(h)}`).toBeUndefined();
      hashes.set(h, r.name);
      end = Math.max(end, r.offset + r.length);
    }
    expect((await stat(dataPath)).size).toBe(end);
    expect(end - initRefs.reduce((n, r) => n + r.length, 0)).toBeLessThan(initRefs.length * WEIGHT_ALIGNMENT);
  });

  it('ties the lm_head to the embedding initializer (Gemm transB=1), no transposed copy', () => {
    for (const m of [init, step]) {
      const gemm = (m.graph?.node ?? []).filter((n) => n.opType === 'Gemm');
      expect(gemm).toHaveLength(1);
      expect(gemm[0].input?.[1]).toBe(EMBED_TOKENS);
      expect(Number(gemm[0].attribute?.find((a) => a.name === 'transB')?.i)).toBe(1);
    }
    const gather = (init.graph?.node ?? []).find((n) => n.opType === 'Gather' && n.input?.[0] === EMBED_TOKENS);
    expect(gather?.name).toBe('/model/embed_tokens/Gather');
    expect(externalRefs(init).filter((r) => r.name.includes('embed') || r.name.includes('lm_head')).map((r) => r.name)).toEqual([EMBED_TOKENS]);
  });

  it('declares the contract I/O and opset 17 only', () => {
    const io = (m: ModelProto): string[][] => [
      (m.graph?.input ?? []).map((v) => v.name ?? ''), (m.graph?.output ?? []).map((v) => v.name ?? ''),
    ];
    expect(io(init)).toEqual([['input_ids', 'position_ids', 'audio_features', 'audio_offset'], ['logits', 'present_keys', 'present_values']]);
    expect(io(step)).toEqual([['input_embeds', 'position_ids', 'past_keys', 'past_values'], ['logits', 'present_keys', 'present_values']]);
    for (const m of [init, step]) {
      expect(m.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
      expect(Number(m.irVersion)).toBe(8);
      expect(m.producerName).toBe('qwen3-onnx');
    }
  });

  it('writes config.json, embed_tokens.bin (float16 rows) and the tokenizer files', async () => {
    const cfg = OutputConfigSchema.parse(JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')));
    const ckpt = await openCheckpoint(ckptDir);
    try {
      const t = ckpt.dims.text;
      expect(cfg.decoder).toMatchObject({ num_layers: t.layers, hidden_size: t.hidden, num_key_value_heads: t.kvHeads, head_dim: t.headDim, vocab_size: t.vocab });
      expect(cfg.encoder).toMatchObject({ num_layers: 3, hidden_size: 64, num_heads: 4, ffn_dim: 128, conv_channels: 16, output_dim: 96, downsample_factor: 8, num_mel_bins: 128 });
      expect(cfg.special_tokens).toEqual({
        eos_token_ids: [151643, 151645], pad_token_id: 151643, im_start_token_id: 151644, im_end_token_id: 151645,
        audio_start_token_id: 151669, audio_end_token_id: 151670, audio_pad_token_id: 151676, asr_text_token_id: 151704,
      });
      expect(cfg.embed_tokens_shape).toEqual([t.vocab, t.hidden]);
      expect(cfg.embed_tokens_dtype).toBe('float16');
      const table = await readFile(join(modelDir, 'embed_tokens.bin'));
      expect(table.byteLength).toBe(t.vocab * t.hidden * 2);
      for (const row of [0, 1, 151643, t.vocab - 1]) {
        const want = await ckpt.tensors.readFloat32Rows(EMBED_TOKENS, row, 1);
        for (let i = 0; i < t.hidden; i++) {
          const got = f16ToF32(table.readUInt16LE((row * t.hidden + i) * 2));
          expect(Math.abs(got - want[i])).toBeLessThanOrEqual(Math.abs(want[i]) * 2 ** -11 + 2 ** -24);
        }
      }
    } finally {
      await ckpt.tensors.close();
    }
    for (const f of ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'preprocessor_config.json', 'chat_template.json']) {
      if (existsSync(join(ckptDir, f))) expect(await sha256File(join(modelDir, f)), f).toBe(await sha256File(join(ckptDir, f)));
    }
  });

  it('records the decoder attention in export-record.json; records from before the option read as onnx', async () => {
    const record = ExportRecordSchema.parse(JSON.parse(await readFile(join(modelDir, 'export-record.json'), 'utf8')));
    expect(record.options).toEqual({ allLogits: false, embedDtype: 'float16', attention: 'onnx' });
    const fused = ExportRecordSchema.parse(JSON.parse(await readFile(join(await tinyModelDir({ attention: 'fused' }), 'export-record.json'), 'utf8')));
    expect(fused.options.attention).toBe('fused');
    const old = { ...record, options: { allLogits: false, embedDtype: 'float16' } };
    expect(ExportRecordSchema.parse(old).options.attention).toBe('onnx');
    expect(() => ExportRecordSchema.parse({ ...record, options: { ...record.options, attention: 'flash' } })).toThrow();
  });

  it('is byte-identical when exported again', async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, 'again');
      const result = await exportModel({ model: ckptDir, output: out });
      const names = (await readdir(modelDir)).sort();
      for (const f of ['config.json', 'decoder_init.onnx', 'decoder_step.onnx', 'decoder_weights.data', 'embed_tokens.bin', 'encoder.onnx', 'encoder_weights.data']) {
        expect(names).toContain(f);
      }
      expect(result.files.map((f) => f.name)).toEqual(names);
      for (const n of names) expect(await sha256File(join(out, n)), n).toBe(await sha256File(join(modelDir, n)));
    });
  });

  it('leaves nothing behind when the export fails midway', async () => {
    await withTempDir(async (dir) => {
      let updates = 0;
      const failing: Progress = {
        // Fails once the encoder is written and the decoder weights are half way.
        update(task) { if (task === 'decoder weights' && ++updates === 5) throw new Error('disk on fire'); },
        info() {}, finish() {},
      };
      await expect(exportModel({ model: ckptDir, output: join(dir, 'model'), progress: failing })).rejects.toThrow('disk on fire');
      expect(await readdir(dir)).toEqual([]);
    });
  });

  it('the CLI exports with --json, refuses to clobber a non-empty --output, replaces it with --overwrite', async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, 'cli-model');
      const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
        run(process.execPath, [join(REPO, 'dist/cli/main.js'), 'export', ...args], { cwd: REPO });
      const { stdout } = await cli(['--model', ckptDir, '--output', out, '--embed-dtype', 'float32', '--json']);
      const result = JSON.parse(stdout) as { output: string; embedDtype: string; files: Array<{ name: string; bytes: number }> };
      expect(result.output).toBe(out);
      expect(result.embedDtype).toBe('float32');
      const embed = result.files.find((f) => f.name === 'embed_tokens.bin');
      const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { embed_tokens_shape: [number, number] };
      expect(embed?.bytes).toBe(cfg.embed_tokens_shape[0] * cfg.embed_tokens_shape[1] * 4);
      const err = await cli(['--model', ckptDir, '--output', out]).then(() => undefined, (e: { code: number; stderr: string }) => e);
      expect(err?.code).toBe(1);
      expect(err?.stderr).toMatch(/^qwen3-onnx: error: --output .*not empty.*--overwrite/);
      await cli(['--model', ckptDir, '--output', out, '--overwrite', '--quiet']);
      expect((await stat(join(out, 'embed_tokens.bin'))).size).toBe(cfg.embed_tokens_shape[0] * cfg.embed_tokens_shape[1] * 2);
      expect(await readdir(dir)).toEqual(['cli-model']);
    });
  });
});
