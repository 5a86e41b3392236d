import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';
import { register as registerBuild } from './build.js';
import { register as registerExport } from './export.js';
import { register as registerQuantize } from './quantize.js';
import { register as registerTranscribe, type TranscribeReport } from './transcribe.js';
import { runCommand, runCommandResult } from './test-support.js';

const SHORT = fileURLToPath(new URL('../../shared/audio/notld/5s_dont_worry_about_him.wav', import.meta.url));

let scratch: string;
let ckpt: string;
beforeAll(async () => {
  ckpt = await tinyCheckpointDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-cli-export-'));
}, 300_000);
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

describe('qwen3-onnx export --attention', () => {
  it('fused: export, quantize and a greedy transcription of the fp32 and int4 decoders', async () => {
    const out = join(scratch, 'fused');
    const exported = JSON.parse(await runCommand(registerExport, 'export', ['--model', ckpt, '--output', out, '--attention', 'fused', '--json'])) as { attention: string };
    expect(exported.attention).toBe('fused');
    const record = JSON.parse(await readFile(join(out, 'export-record.json'), 'utf8')) as { options: { attention: string } };
    expect(record.options.attention).toBe('fused');

    const q = JSON.parse(await runCommand(registerQuantize, 'quantize', ['--model-dir', out, '--threads', '1', '--json'])) as {
      report: { graphs: Array<{ fusion: { rmsNorm: number }; quantization: { quantized: unknown[] }; packing: { packed: Array<{ node: string }> } }> };
    };
    // Same rewrites as on the standard-op graphs: every RMSNorm (input, post, q/k per layer + final) fused, every linear quantised.
    expect(q.report.graphs.map((g) => g.fusion.rmsNorm)).toEqual([13, 13]);
    expect(q.report.graphs.map((g) => g.quantization.quantized.length)).toEqual([22, 22]);
    // q|k|v still share their input in the fused graphs, so they are packed as in the plain ones.
    expect(q.report.graphs[1].packing.packed.map((p) => p.node)).toEqual([0, 1, 2].flatMap((l) => [
      `/model/layers.${l}/attn/q_proj+k_proj+v_proj/MatMul_Q4`, `/model/layers.${l}/mlp/gate_proj+up_proj/MatMul_Q4`]));

    for (const variant of ['fp32', 'int4']) {
      const report = JSON.parse(await runCommand(registerTranscribe, 'transcribe', [
        '--model-dir', out, '--variant', variant, '--max-new-tokens', '3', '--threads', '1', '--json', SHORT,
      ])) as TranscribeReport;
      expect(report.variant).toBe(variant);
      const [file] = report.files;
      expect(file.tokens.length).toBeGreaterThan(0);
      expect(file.tokens.length).toBeLessThanOrEqual(3);
      expect(file.timings.stepMs.length).toBe(file.tokens.length - 1);
    }
  }, 300_000);

  it('rejects an unknown --attention value with one line naming the flag (export and build)', async () => {
    for (const [register, command] of [[registerExport, 'export'], [registerBuild, 'build']] as const) {
      const { error } = await runCommandResult(register, command, ['--model', ckpt, '--output', join(scratch, 'never'), '--attention', 'flash']);
      expect(error, command).toBeInstanceOf(UserError);
      expect((error as Error).message).toBe('--attention must be one of onnx, fused, got "flash"');
    }
  });
});
