import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readIntAttribute, loadModel, readTensorBytesSync, type LoadedModel } from '../common/onnx/index.js';
import type { NBitsOptions } from './matmul-nbits.js';
import { packName } from './pack-projections.js';
import { transformGraphs } from './transform.js';
import {
  buildModel, f32, maxAbsDiff, node, randomFloats, removeTempDirs, runOrt, saveWithExternalData, tempDir, type GraphSpec,
} from './test-graphs.js';

afterAll(removeTempDirs);

const K = 64;

/**
 * a -> MatMul(Wq [K,48]), MatMul(Wk [K,32]), MatMul(Wv [K,32])   (siblings: packed)
 * b -> MatMul(Wg [K,40]), Gemm(Wu [40,K], bias, transB=1)          (the Gemm has a bias: left alone)
 * a -> MatMul(Wq [K,48]) again as `q2`                             (the same weight again: one more member)
 */
function siblings(): GraphSpec {
  return {
    inputs: [{ name: 'a', dims: [2, K] }, { name: 'b', dims: [2, K] }],
    outputs: [48, 32, 32, 40, 40, 48].map((n, i) => ({ name: ['q', 'k', 'v', 'g', 'u', 'q2'][i], dims: [2, n] })),
    initializers: [
      { name: 'self_attn.q_proj.weight', dims: [K, 48], data: randomFloats(K * 48, 1, 0.05) },
      { name: 'self_attn.k_proj.weight', dims: [K, 32], data: randomFloats(K * 32, 2, 0.05) },
      { name: 'self_attn.v_proj.weight', dims: [K, 32], data: randomFloats(K * 32, 3, 0.05) },
      { name: 'mlp.gate.weight', dims: [K, 40], data: randomFloats(K * 40, 4, 0.05) },
      { name: 'mlp.up.weight', dims: [40, K], data: randomFloats(K * 40, 5, 0.05) },
      { name: 'mlp.up.bias', dims: [40], data: randomFloats(40, 6, 0.1) },
    ],
    nodes: [
      node('MatMul', ['a', 'self_attn.q_proj.weight'], ['q'], {}, '', '/attn/q_proj/MatMul'),
      node('MatMul', ['a', 'self_attn.k_proj.weight'], ['k'], {}, '', '/attn/k_proj/MatMul'),
      node('MatMul', ['a', 'self_attn.v_proj.weight'], ['v'], {}, '', '/attn/v_proj/MatMul'),
      node('MatMul', ['b', 'mlp.gate.weight'], ['g'], {}, '', '/mlp/gate/MatMul'),
      node('Gemm', ['b', 'mlp.up.weight', 'mlp.up.bias'], ['u'], { transB: 1, alpha: 1.0, beta: 1.0 }, '', '/mlp/up/Gemm'),
      node('MatMul', ['a', 'self_attn.q_proj.weight'], ['q2'], {}, '', '/attn/q_again/MatMul'),
    ],
  };
}

const OPTS: NBitsOptions = { bits: 4, blockSize: 32, symmetric: false, accuracyLevel: 0, exclude: [] };

async function quantize(dir: string, src: string, tag: string, pack: boolean): Promise<LoadedModel> {
  const dst = join(dir, `m.${tag}.onnx`);
  await transformGraphs({ graphs: [{ src, dst }], dataFile: join(dir, `m.${tag}.data`), fuse: false, skipFusion: false, quantize: OPTS, pack });
  return loadModel(dst);
}

describe('packing sibling MatMulNBits', () => {
  it('names a packed thing after its members: common prefix and suffix around the joined middles', () => {
    expect(packName(['/model/layers.0/attn/q_proj/MatMul_Q4', '/model/layers.0/attn/k_proj/MatMul_Q4', '/model/layers.0/attn/v_proj/MatMul_Q4']))
      .toBe('/model/layers.0/attn/q_proj+k_proj+v_proj/MatMul_Q4');
    expect(packName(['thinker.model.layers.3.mlp.gate_proj.weight_Q4', 'thinker.model.layers.3.mlp.up_proj.weight_Q4']))
      .toBe('thinker.model.layers.3.mlp.gate_proj+up_proj.weight_Q4');
    // Names that differ in a whole segment only at the end or start still join whole segments.
    expect(packName(['a.x', 'a.yz'])).toBe('a.x+yz');
    expect(packName(['x.w', 'yz.w'])).toBe('x+yz.w');
  });

  it('packs nodes that share input and attributes, leaves biased ones, keeps values and outputs', async () => {
    const dir = await tempDir('pack');
    const src = await saveWithExternalData(buildModel(siblings()), dir, 'm.onnx', 'm.data');
    const packed = await quantize(dir, src, 'packed', true);
    const plain = await quantize(dir, src, 'plain', false);

    const nodes = packed.model.graph!.node!;
    const nbits = nodes.filter((n) => n.opType === 'MatMulNBits');
    // a: q, k, v, q2 -> one node of N = 48+32+32+48; b: gate alone (its sibling has a bias) + up.
    expect(nbits.map((n) => [n.name, readIntAttribute(n, 'N', 0)])).toEqual([
      ['/attn/q_proj+k_proj+v_proj+q_again/MatMul_Q4', 160], ['/mlp/gate/MatMul_Q4', 40], ['/mlp/up/Gemm_Q4', 40],
    ]);
    const split = nodes.find((n) => n.opType === 'Split')!;
    expect(split.input![0]).toBe(nbits[0].output![0]);
    expect(split.output).toEqual(['q', 'k', 'v', 'q2']);
    // Topological order: the packed node and its Split come before every consumer (graph outputs here).
    expect(nodes.indexOf(split)).toBe(nodes.indexOf(nbits[0]) + 1);

    // Packed bytes = the unpacked nodes' bytes concatenated in member order.
    const bytes = (m: LoadedModel, name: string) => Buffer.from(readTensorBytesSync(m.model.graph!.initializer!.find((t) => t.name === name)!, m.path));
    const plainByOut = new Map(plain.model.graph!.node!.map((n) => [n.output![0], n]));
    for (const i of [1, 2, 3]) {
      const want = Buffer.concat(['q', 'k', 'v', 'q2'].map((o) => bytes(plain, plainByOut.get(o)!.input![i])));
      expect(bytes(packed, nbits[0].input![i]).equals(want), `input ${i}`).toBe(true);
    }

    const feeds = { a: f32(randomFloats(2 * K, 7), [2, K]), b: f32(randomFloats(2 * K, 8), [2, K]) };
    const got = await runOrt(packed.path, feeds);
    const want = await runOrt(plain.path, feeds);
    for (const o of ['q', 'k', 'v', 'g', 'u', 'q2']) {
      expect(got[o].dims, o).toEqual(want[o].dims);
      expect(maxAbsDiff(got[o].data, want[o].data), o).toBeLessThan(1e-6);
    }
  });
});
