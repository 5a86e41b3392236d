import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { craftCheckpoint } from '../checkpoint/test-checkpoint.js';
import { floatTensor } from '../checkpoint/test-writer.js';
import { formatInspection, inspectPath, register } from './inspect.js';

const { onnx } = onnxProto;
let root: string;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'q3o-inspect-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

/** A two-node graph: one inline initializer, one in weights.data, one contrib op. */
function tinyOnnx(): Uint8Array {
  const F = onnx.TensorProto.DataType.FLOAT;
  const value = (name: string, dims: (number | string)[]) => onnx.ValueInfoProto.create({
    name,
    type: { tensorType: { elemType: F, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  });
  const graph = onnx.GraphProto.create({
    name: 'g',
    input: [value('x', ['batch', 2])],
    output: [value('y', ['batch', 2])],
    initializer: [
      onnx.TensorProto.create({ name: 'a', dims: [2], dataType: F, rawData: new Uint8Array(8) }),
      onnx.TensorProto.create({
        name: 'b', dims: [2, 2], dataType: F, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [{ key: 'location', value: 'weights.data' }, { key: 'offset', value: '0' }, { key: 'length', value: '16' }],
      }),
    ],
    node: [
      onnx.NodeProto.create({ opType: 'Add', input: ['x', 'a'], output: ['t'] }),
      onnx.NodeProto.create({ opType: 'Add', input: ['t', 'a'], output: ['u'] }),
      onnx.NodeProto.create({ opType: 'FusedMatMul', domain: 'com.microsoft', input: ['u', 'b'], output: ['y'] }),
    ],
  });
  return onnx.ModelProto.encode(onnx.ModelProto.create({
    irVersion: 8, producerName: 'test', graph,
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
  })).finish();
}

async function runCli(...args: string[]): Promise<{ out: string; err?: Error }> {
  const program = new Command().exitOverride();
  register(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'qwen3-onnx', 'inspect', ...args]);
    return { out };
  } catch (err) {
    return { out, err: err as Error };
  } finally {
    spy.mockRestore();
  }
}

describe('inspect', () => {
  it('summarizes and validates a checkpoint directory', async () => {
    const d = join(root, 'ckpt');
    await craftCheckpoint(d, { shards: 2, edit: (ts) => [...ts, floatTensor('extra.t', [3], 'F32')] });
    const { out, err } = await runCli(d, '--json');
    expect(err).toBeUndefined();
    const r = JSON.parse(out);
    expect(r.kind).toBe('checkpoint');
    expect(r.tensors.dtypes).toEqual({ BF16: r.tensors.count - 1, F32: 1 });
    expect(r.tensors.files).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(r.validation).toMatchObject({ ok: true, problems: [], extras: ['extra.t'] });
    expect(r.validation.matched).toBe(r.validation.expected);
    const text = formatInspection(await inspectPath(d));
    expect(text).toMatch(/validation: ok/);
    expect(text).toMatch(/text: 2 layers, hidden 10, 2 heads \/ 1 kv x 4/);
  });

  it('prints the report and fails when validation fails', async () => {
    const d = join(root, 'bad');
    await craftCheckpoint(d, { edit: (ts) => ts.filter((t) => t.name !== 'thinker.model.norm.weight') });
    const { out, err } = await runCli(d);
    expect(out).toMatch(/validation: FAILED \(1 problems\)/);
    expect(err?.message).toMatch(/tensor thinker\.model\.norm\.weight is missing/);
  });

  it('describes an .onnx graph: io, ops, initializers, external data', async () => {
    const d = join(root, 'onnx');
    await mkdir(d);
    await writeFile(join(d, 'm.onnx'), tinyOnnx());
    await writeFile(join(d, 'weights.data'), new Uint8Array(16));
    const { out, err } = await runCli(join(d, 'm.onnx'), '--json');
    expect(err).toBeUndefined();
    const g = JSON.parse(out).graphs[0];
    expect(g.inputs).toEqual([{ name: 'x', type: 'float', dims: ['batch', 2] }]);
    expect(g.outputs).toEqual([{ name: 'y', type: 'float', dims: ['batch', 2] }]);
    expect(g.ops).toEqual({ Add: 2, 'com.microsoft.FusedMatMul': 1 });
    expect(g.nodes).toBe(3);
    expect(g.opsets).toEqual(['ai.onnx:17', 'com.microsoft:1']);
    expect(g.initializers).toEqual({ count: 2, bytes: 24, inlineBytes: 8, externalBytes: 16 });
    expect(g.externalData).toEqual([{ file: 'weights.data', tensors: 1, bytes: 16, exists: true }]);

    await unlink(join(d, 'weights.data'));
    const missing = await runCli(join(d, 'm.onnx'));
    expect(missing.out).toMatch(/external data: weights\.data: 1 tensors, 0\.0 MB \(MISSING\)/);
    expect(missing.err?.message).toMatch(/m\.onnx: external data file weights\.data is missing/);
  });

  it('describes a model directory and checks its config.json', async () => {
    const d = join(root, 'model');
    await mkdir(d);
    await writeFile(join(d, 'encoder.onnx'), tinyOnnx());
    await writeFile(join(d, 'weights.data'), new Uint8Array(16));
    await writeFile(join(d, 'config.json'), JSON.stringify({ model_type: 'qwen3_asr', encoder: {} }));
    const { out, err } = await runCli(d, '--json');
    const r = JSON.parse(out);
    expect(r.kind).toBe('model');
    expect(r.files.map((f: { name: string }) => f.name)).toEqual(['config.json', 'encoder.onnx', 'weights.data']);
    expect(r.graphs.map((g: { file: string }) => g.file)).toEqual(['encoder.onnx']);
    expect(r.configProblems[0]).toMatch(/^config\.json: encoder\.num_layers: /);
    expect(err?.message).toMatch(/config\.json: encoder\.num_layers/);
  });

  it('rejects paths that are neither', async () => {
    const d = join(root, 'empty');
    await mkdir(d);
    await expect(inspectPath(d)).rejects.toThrow(/neither a checkpoint/);
    await expect(inspectPath(join(root, 'nope'))).rejects.toThrow(/cannot inspect .*nope: no such file/);
    await writeFile(join(d, 'x.onnx'), new Uint8Array([0xff, 0xff, 0xff]));
    await expect(inspectPath(join(d, 'x.onnx'))).rejects.toThrow(/x\.onnx: not a valid ONNX model/);
  });
});
