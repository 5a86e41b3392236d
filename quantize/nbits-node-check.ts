import { rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  DataType, dimsOf, encodeModel, loadModel, onnx as OnnxProto, readIntAttribute, readTensorBytesSync,
  type LoadedModel, type Node,
} from '../common/onnx/index.js';
import { rtnDequantize, type RtnParams } from './rtn.js';
import { randomFloats } from './test-graphs.js';

/**
 * Test support (not production code): checks every MatMulNBits node of a quantised graph against
 * the float graph it came from. For each node: its dequantised weight is within `maxSteps` of a
 * quantisation step of the float weight(s) it replaced (several side by side along N for a packed
 * node, found through its Split), and the node run alone in onnxruntime (accuracy_level removed:
 * float activations) equals a float64 matmul with the dequantised weight to 1e-5 of sum|a*w|.
 * Returns one line per node for the caller to assert on; empty lines mean nothing failed.
 */

export interface NodeCheck { node: string; K: number; N: number; bits: number; blockSize: number; accuracyLevel: number; worstSteps: number; worstRel: number }

/** The single-node models are written beside `quantPath` (their initializers point into its data file) and removed. */
export async function checkMatMulNBitsNodes(quantPath: string, floatPath: string): Promise<NodeCheck[]> {
  const q = await loadModel(quantPath);
  const f = await loadModel(floatPath);
  const floatNodeByOutput = new Map(f.graph.node.map((n) => [n.output[0], n]));
  const splitByInput = new Map(q.graph.node.filter((n) => n.opType === 'Split').map((n) => [n.input[0], n]));
  const out: NodeCheck[] = [];
  for (const n of q.graph.node.filter((x) => x.opType === 'MatMulNBits')) {
    const K = readIntAttribute(n, 'K', 0);
    const N = readIntAttribute(n, 'N', 0);
    const bits = readIntAttribute(n, 'bits', 0);
    const p: RtnParams = { bits: bits as 4 | 8, blockSize: readIntAttribute(n, 'block_size', 0), symmetric: !n.input[3] };
    const init = (name: string) => {
      const t = q.graph.initializer.find((x) => x.name === name);
      if (!t) throw new Error(`${n.name}: input ${name} is not an initializer`);
      return t;
    };
    const sc = readTensorBytesSync(init(n.input[2]), q.path);
    const qt = {
      B: readTensorBytesSync(init(n.input[1]), q.path),
      scales: new Float32Array(sc.buffer.slice(sc.byteOffset, sc.byteOffset + sc.byteLength)),
      zeroPoints: n.input[3] ? readTensorBytesSync(init(n.input[3]), q.path) : null,
    };
    const dq = rtnDequantize(qt, K, N, p);

    const outputs = splitByInput.get(n.output[0])?.output ?? [n.output[0]];
    const orig = new Float32Array(K * N);
    let col0 = 0;
    for (const o of outputs) {
      const fn = floatNodeByOutput.get(o);
      const fw = fn && f.graph.initializer.find((t) => t.name === fn.input[1]);
      if (!fn || !fw) throw new Error(`${n.name}: no float MatMul/Gemm with a constant weight makes ${o}`);
      const raw = readTensorBytesSync(fw, f.path);
      const w32 = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const transB = fn.opType === 'Gemm' && readIntAttribute(fn, 'transB', 0) === 1;
      const d = dimsOf(fw);
      const n1 = transB ? d[0] : d[1];
      if ((transB ? d[1] : d[0]) !== K) throw new Error(`${n.name}: float weight ${fw.name} has K ${transB ? d[1] : d[0]}, node K ${K}`);
      for (let k = 0; k < K; k++) for (let c = 0; c < n1; c++) orig[k * N + col0 + c] = transB ? w32[c * K + k] : w32[k * n1 + c];
      col0 += n1;
    }
    if (col0 !== N) throw new Error(`${n.name}: float weights give N ${col0}, node N ${N}`);
    const nb = Math.ceil(K / p.blockSize);
    let worstSteps = 0;
    for (let k = 0; k < K; k++) for (let c = 0; c < N; c++) {
      const step = Math.abs(qt.scales[c * nb + Math.floor(k / p.blockSize)]);
      const d = Math.abs(dq[k * N + c] - orig[k * N + c]);
      worstSteps = Math.max(worstSteps, step > 0 ? d / step : d === 0 ? 0 : Infinity);
    }

    const M = 2;
    const path = join(dirname(quantPath), 'single-node-check.onnx');
    await writeFile(path, encodeModel(singleNodeModel(n, q, K, N, M)));
    const a = randomFloats(M * K, K + N);
    const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: 'disabled', intraOpNumThreads: 1 });
    let y: Float32Array;
    try { y = (await s.run({ A: new ort.Tensor('float32', a, [M, K]) })).Y.data as Float32Array; } finally { await s.release(); await rm(path, { force: true }); }
    let worstRel = 0;
    for (let m = 0; m < M; m++) for (let c = 0; c < N; c += 1) {
      let sum = 0;
      let mag = 0;
      for (let k = 0; k < K; k++) { sum += a[m * K + k] * dq[k * N + c]; mag += Math.abs(a[m * K + k] * dq[k * N + c]); }
      worstRel = Math.max(worstRel, Math.abs(y[m * N + c] - sum) / (mag + 1e-30));
    }
    out.push({ node: n.name, K, N, bits, blockSize: p.blockSize, accuracyLevel: readIntAttribute(n, 'accuracy_level', 0), worstSteps, worstRel });
  }
  return out;
}

function singleNodeModel(n: Node, q: LoadedModel, K: number, N: number, M: number) {
  const names = new Set(n.input.slice(1).filter(Boolean));
  const initializer = q.graph.initializer.filter((t) => names.has(t.name));
  return OnnxProto.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'single',
      node: [{ ...n, input: ['A', ...n.input.slice(1)], output: ['Y'], attribute: n.attribute.filter((x) => x.name !== 'accuracy_level') }],
      input: [{ name: 'A', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: K }] } } } }],
      output: [{ name: 'Y', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: N }] } } } }],
      initializer,
    },
  });
}
