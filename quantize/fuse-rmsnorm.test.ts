import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType, loadModel, type NodeProto } from '../common/onnx/index.js';
import { transformGraphs } from './transform.js';
import {
  buildModel, f32, maxRelDiff, node, randomFloats, runOrt, saveWithExternalData, removeTempDirs, tempDir, type GraphSpec,
} from './test-graphs.js';

afterAll(removeTempDirs);

const D = 64;
const S = 5;
const scalar = (name: string, v: number) => ({ name, dims: [], data: Float32Array.of(v) });
const weight = (name: string, seed: number) => ({ name, dims: [D], data: randomFloats(D, seed, 0.3).map((v) => v + 1) });
const io = (name: string) => ({ name, dims: [1, 'S', D] as (number | string)[] });

/** Torch (TorchScript exporter, opset 17): identity Casts, Pow, Div(1, Sqrt), weight first in the Mul. */
function torchScriptForm(): GraphSpec {
  return {
    opset: 17,
    inputs: [io('x')],
    outputs: [io('y')],
    initializers: [scalar('two', 2), scalar('eps', 1e-6), scalar('one', 1), weight('w', 1)],
    nodes: [
      node('Cast', ['x'], ['xc'], { to: DataType.FLOAT }),
      node('Pow', ['xc', 'two'], ['sq']),
      node('ReduceMean', ['sq'], ['ms'], { axes: [-1], keepdims: 1 }),
      node('Add', ['ms', 'eps'], ['ae']),
      node('Sqrt', ['ae'], ['s']),
      node('Div', ['one', 's'], ['inv']),
      node('Mul', ['xc', 'inv'], ['nrm']),
      node('Cast', ['nrm'], ['nrmc'], { to: DataType.FLOAT }),
      node('Mul', ['w', 'nrmc'], ['y']),
    ],
  };
}

/** Torch dynamo (opset 18): ReduceMean axes as an input, Mul(x, x), Reciprocal, eps from a Constant node. */
function dynamoForm(): GraphSpec {
  return {
    opset: 18,
    inputs: [io('x')],
    outputs: [io('y')],
    initializers: [{ name: 'axes', dims: [1], data: BigInt64Array.of(-1n) }, weight('w', 2)],
    nodes: [
      node('Mul', ['x', 'x'], ['sq']),
      node('ReduceMean', ['sq', 'axes'], ['ms'], { keepdims: 1 }),
      node('Constant', [], ['eps'], { value_float: 1e-5 }),
      node('Add', ['eps', 'ms'], ['ae']),
      node('Sqrt', ['ae'], ['s']),
      node('Reciprocal', ['s'], ['inv']),
      node('Mul', ['inv', 'x'], ['nrm']),
      node('Mul', ['nrm', 'w'], ['y']),
    ],
  };
}

/** Our exporter's form (graph-builder/rmsnorm.ts), twice in a row with a residual Add feeding the second. */
function exportForm(): GraphSpec {
  const norm = (x: string, w: string, p: string): NodeProto[] => [
    node('Pow', [x, 'two'], [`${p}sq`]),
    node('ReduceMean', [`${p}sq`], [`${p}ms`], { axes: [-1], keepdims: 1 }),
    node('Add', [`${p}ms`, 'eps'], [`${p}ae`]),
    node('Sqrt', [`${p}ae`], [`${p}s`]),
    node('Div', [x, `${p}s`], [`${p}nrm`]),
    node('Mul', [`${p}nrm`, w], [`${p}y`]),
  ];
  return {
    opset: 17,
    inputs: [io('x'), io('r')],
    outputs: [io('out')],
    initializers: [scalar('two', 2), scalar('eps', 1e-6), weight('w1', 3), weight('w2', 4)],
    nodes: [
      ...norm('x', 'w1', 'a_'),
      node('Add', ['r', 'a_y'], ['h']), // residual: h feeds the next norm AND the final Add
      ...norm('h', 'w2', 'b_'),
      node('Add', ['h', 'b_y'], ['out']),
    ],
  };
}

async function fuseAndCompare(spec: GraphSpec, skip: boolean) {
  const dir = await tempDir('fuse');
  const src = await saveWithExternalData(buildModel(spec), dir, 'm.onnx', 'm.data', 16);
  const dst = join(dir, 'm.fused.onnx');
  const report = await transformGraphs({ graphs: [{ src, dst }], dataFile: join(dir, 'm.fused.data'), fuse: true, skipFusion: skip, quantize: null });
  const feeds = Object.fromEntries(spec.inputs.map((i, k) => [i.name, f32(randomFloats(S * D, 10 + k, 2), [1, S, D])]));
  // Optimisations off: the unfused graph must run decomposed, the fused one through the fused kernel.
  const off = { graphOptimizationLevel: 'disabled' as const };
  const before = await runOrt(src, feeds, off);
  const after = await runOrt(dst, feeds, off);
  const ops = (await loadModel(dst)).model.graph!.node!.map((n) => n.opType);
  return { report: report.graphs[0].fusion, before, after, ops };
}

describe('RMSNorm fusion', () => {
  it('fuses the TorchScript form (identity Casts, Div(1, Sqrt), opset 17) and keeps the outputs', async () => {
    const { report, before, after, ops } = await fuseAndCompare(torchScriptForm(), false);
    expect(report.rmsNorm).toBe(1);
    expect(ops).toEqual(['SimplifiedLayerNormalization']);
    expect(maxRelDiff(after.y.data, before.y.data, 1e-3)).toBeLessThan(1e-5);
  });

  it('fuses the dynamo form (ReduceMean axes input, Mul(x,x), Reciprocal, Constant eps, opset 18)', async () => {
    const { report, before, after, ops } = await fuseAndCompare(dynamoForm(), false);
    expect(report.rmsNorm).toBe(1);
    expect(ops).toEqual(['SimplifiedLayerNormalization']);
    expect(maxRelDiff(after.y.data, before.y.data, 1e-3)).toBeLessThan(1e-5);
  });

  it("fuses our exporter's form, and with skip fusion folds the residual Add in", async () => {
    const plain = await fuseAndCompare(exportForm(), false);
    expect(plain.report).toEqual({ rmsNorm: 2, skipRmsNorm: 0 });
    expect(plain.ops).toEqual(['SimplifiedLayerNormalization', 'Add', 'SimplifiedLayerNormalization', 'Add']);
    expect(maxRelDiff(plain.after.out.data, plain.before.out.data, 1e-3)).toBeLessThan(1e-5);

    const skip = await fuseAndCompare(exportForm(), true);
    expect(skip.report).toEqual({ rmsNorm: 2, skipRmsNorm: 1 });
    expect(skip.ops).toEqual(['SimplifiedLayerNormalization', 'SkipSimplifiedLayerNormalization', 'Add']);
    expect(maxRelDiff(skip.after.out.data, skip.before.out.data, 1e-3)).toBeLessThan(1e-5);
  });

  const negatives: [string, (g: GraphSpec) => void][] = [
    ['ReduceMean over a non-last axis', (g) => { g.nodes[2] = node('ReduceMean', ['sq'], ['ms'], { axes: [1], keepdims: 1 }); }],
    ['Pow with exponent 3', (g) => { g.initializers[0] = scalar('two', 3); }],
    ['an intermediate that is also a graph output', (g) => { g.outputs.push({ name: 'ms', dims: [1, 'S', 1] }); }],
    ['an intermediate with a second consumer', (g) => { g.nodes.push(node('Add', ['s', 'y'], ['y2'])); g.outputs.push(io('y2')); }],
    ['keepdims 0', (g) => { g.nodes[2] = node('ReduceMean', ['sq'], ['ms'], { axes: [-1], keepdims: 0 }); }],
    ['a non-identity Cast', (g) => { g.nodes[0] = node('Cast', ['x'], ['xc'], { to: DataType.DOUBLE }); }],
  ];
  for (const [what, mutate] of negatives) {
    it(`leaves the graph alone with ${what}`, async () => {
      const spec = torchScriptForm();
      mutate(spec);
      const dir = await tempDir('fuse-neg');
      const src = await saveWithExternalData(buildModel(spec), dir, 'm.onnx', 'm.data', 16);
      const report = await transformGraphs({ graphs: [{ src, dst: join(dir, 'o.onnx') }], dataFile: join(dir, 'o.data'), fuse: true, skipFusion: true, quantize: null });
      expect(report.graphs[0].fusion).toEqual({ rmsNorm: 0, skipRmsNorm: 0 });
      const ops = (await loadModel(join(dir, 'o.onnx'))).model.graph!.node!.map((n) => n.opType);
      expect(ops).toEqual(spec.nodes.map((n) => n.opType));
    });
  }
});
