import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType, dimsOf, readIntAttribute, readTensorBytesSync, tensorBytes, type LoadedModel, loadModel } from '../common/onnx/index.js';
import { f16BytesToF32 } from '../common/float16.js';
import { rtnDequantize, type RtnParams } from './rtn.js';
import { transformGraphs } from './transform.js';
import type { GatherQuantizeOptions } from './gather-block-quantized.js';
import { buildModel, node, randomFloats, removeTempDirs, runOrt, saveWithExternalData, tempDir, type GraphSpec } from './test-graphs.js';

afterAll(removeTempDirs);

const S = 5;

/**
 * A tied embedding as decoder_init has it: ids -> Gather(E) -> h [1,S,H]; logits = Gemm(h2d, E,
 * transB=1) on a [S,H] view (the graph builder's lm_head). decoder_step's lm_head alone:
 * x [S,H] -> Gemm(E, transB=1).
 */
function tiedInit(V: number, H: number, E: Float32Array): GraphSpec {
  return {
    inputs: [{ name: 'ids', elemType: DataType.INT64, dims: [1, S] }],
    outputs: [{ name: 'h', dims: [1, S, H] }, { name: 'logits', dims: [S, V] }],
    initializers: [{ name: 'E', dims: [V, H], data: E }, { name: 'flat', dims: [2], data: new BigInt64Array([-1n, BigInt(H)]) }],
    nodes: [
      node('Gather', ['E', 'ids'], ['h'], { axis: 0 }, '', 'embed/Gather'),
      node('Reshape', ['h', 'flat'], ['h2']),
      node('Gemm', ['h2', 'E'], ['logits'], { transB: 1, alpha: 1.0, beta: 1.0 }, '', 'lm_head/Gemm'),
    ],
  };
}

function stepHead(V: number, H: number, E: Float32Array): GraphSpec {
  return {
    inputs: [{ name: 'x', dims: [S, H] }],
    outputs: [{ name: 'logits', dims: [S, V] }],
    initializers: [{ name: 'E', dims: [V, H], data: E }],
    nodes: [node('Gemm', ['x', 'E'], ['logits'], { transB: 1, alpha: 1.0, beta: 1.0 }, '', 'lm_head/Gemm')],
  };
}

interface Run { dir: string; init: LoadedModel; step: LoadedModel; initPath: string; stepPath: string; data: string }

async function quantizeTied(V: number, H: number, p: RtnParams, share: GatherQuantizeOptions['share'], tag: string): Promise<Run & { E: Float32Array }> {
  const dir = await tempDir(`gbq-${tag}`);
  const E = randomFloats(V * H, 7, 0.3);
  const src = await saveWithExternalData(buildModel(tiedInit(V, H, E)), dir, 'init.onnx', 'w.data');
  const srcStep = await saveWithExternalData(buildModel(stepHead(V, H, E)), dir, 'step.onnx', 'w2.data');
  const initPath = join(dir, 'init.q.onnx');
  const stepPath = join(dir, 'step.q.onnx');
  const data = join(dir, 'w.q.data');
  await transformGraphs({
    graphs: [{ src, dst: initPath }, { src: srcStep, dst: stepPath }], dataFile: data, fuse: false, skipFusion: false,
    quantize: { ...p, accuracyLevel: 0, exclude: [] }, embedding: { params: p, tables: (n) => n === 'E', share }, threads: 1,
  });
  return { dir, E, init: await loadModel(initPath), step: await loadModel(stepPath), initPath, stepPath, data };
}

function init(m: LoadedModel, name: string) {
  const t = m.graph.initializer.find((i) => i.name === name);
  if (!t) throw new Error(`no initializer ${name}`);
  return t;
}

/** The MatMulNBits B tensor's initializer name (through a Reshape in the 'reshape' arrangement). */
function matmulTable(m: LoadedModel): string {
  const mm = m.graph.node.find((n) => n.opType === 'MatMulNBits');
  if (!mm) throw new Error('no MatMulNBits');
  const reshape = m.graph.node.find((n) => n.opType === 'Reshape' && n.output[0] === mm.input[1]);
  return reshape ? reshape.input[0] : mm.input[1];
}

/** The lm_head's dequantised W^T rows [V, H] (row v = the K values MatMulNBits multiplies column v by). */
function lmHeadRows(m: LoadedModel, V: number, H: number, p: RtnParams): Float32Array {
  const mm = m.graph.node.find((n) => n.opType === 'MatMulNBits')!;
  const bytes = (name: string) => readTensorBytesSync(init(m, name), m.path);
  const sc = bytes(mm.input[2]);
  const w = rtnDequantize({
    B: bytes(matmulTable(m)), scales: new Float32Array(sc.buffer.slice(sc.byteOffset, sc.byteOffset + sc.byteLength)),
    zeroPoints: mm.input[3] ? bytes(mm.input[3]) : null,
  }, H, V, p); // [K=H, N=V]
  const rows = new Float32Array(V * H);
  for (let k = 0; k < H; k++) for (let v = 0; v < V; v++) rows[v * H + k] = w[k * V + v];
  return rows;
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const cases: [string, number, RtnParams, GatherQuantizeOptions['share']][] = [
  ['int4 asymmetric, block 32', 64, { bits: 4, blockSize: 32, symmetric: false }, 'range'],
  ['int4 asymmetric, H not a multiple of the block (padded rows, sliced)', 96, { bits: 4, blockSize: 64, symmetric: false }, 'range'],
  ['int4 symmetric', 64, { bits: 4, blockSize: 16, symmetric: true }, 'range'],
  ['int8 asymmetric', 64, { bits: 8, blockSize: 32, symmetric: false }, 'range'],
  ['int4 asymmetric, table fed to MatMulNBits through a Reshape', 64, { bits: 4, blockSize: 32, symmetric: false }, 'reshape'],
];

describe('Gather -> GatherBlockQuantized over the tied lm_head\'s int4 table', () => {
  for (const [label, H, p, share] of cases) {
    it(`rows equal the dequantised int4 rows the lm_head multiplies by, stored once (${label})`, async () => {
      const V = 300;
      const r = await quantizeTied(V, H, p, share, label.replace(/\W+/g, '-').slice(0, 20));
      const ops = r.init.graph.node.map((n) => n.opType);
      expect(ops).toContain('GatherBlockQuantized');
      expect(ops).not.toContain('Gather');
      expect(r.init.graph.initializer.some((t) => t.name === 'E')).toBe(false);
      const gbq = r.init.graph.node.find((n) => n.opType === 'GatherBlockQuantized')!;
      expect(readIntAttribute(gbq, 'block_size', 0)).toBe(p.blockSize);
      expect(readIntAttribute(gbq, 'bits', 0)).toBe(p.bits);
      expect(readIntAttribute(gbq, 'gather_axis', -1)).toBe(0);
      expect(readIntAttribute(gbq, 'quantize_axis', -1)).toBe(1);
      const mm = r.init.graph.node.find((n) => n.opType === 'MatMulNBits')!;
      // The same scales and zero points initializers; the table is one byte range of the data file.
      expect(gbq.input[2]).toBe(mm.input[2]);
      if (!p.symmetric) expect(gbq.input[3]).toBe(mm.input[3]);
      const rows = tensorBytes(init(r.init, gbq.input[0]), r.init.path);
      const table = tensorBytes(init(r.init, matmulTable(r.init)), r.init.path);
      const stepTable = tensorBytes(init(r.step, matmulTable(r.step)), r.step.path);
      expect(rows.kind).toBe('external');
      expect(table).toEqual(rows);
      // The step graph here reads its own float copy (its own source file), so its table is one
      // range only when both name it the same way; a model directory's two decoders share one
      // source file, hence one task (quantize/model-dir.test.ts checks that case).
      if (share === 'range') expect(stepTable).toEqual(rows);
      expect(dimsOf(init(r.init, gbq.input[0]))).toEqual([V, Math.ceil(H / p.blockSize) * p.blockSize * p.bits / 8]);

      // Hash check: the table's bytes occur once among the data file's tensors, and the file holds
      // nothing but the distinct tensors both graphs name (B, scales, zero points).
      const file = new Uint8Array(await readFile(r.data));
      const ranges = new Map<string, { offset: number; length: number }>();
      for (const m of [r.init, r.step]) {
        for (const t of m.graph.initializer) {
          const b = tensorBytes(t, m.path);
          if (b.kind === 'external') ranges.set(`${b.offset}:${b.length}`, { offset: b.offset, length: b.length });
        }
      }
      const hashes = [...ranges.values()].map((x) => sha(file.subarray(x.offset, x.offset + x.length)));
      const tableHash = sha(readTensorBytesSync(init(r.init, gbq.input[0]), r.init.path));
      expect(hashes.filter((h) => h === tableHash)).toHaveLength(share === 'range' ? 1 : 2);
      if (share === 'range') {
        expect(new Set(hashes).size).toBe(hashes.length);
        expect(ranges.size).toBe(p.symmetric ? 2 : 3);
      }

      const ids = [0, 7, V - 1, 123, 7];
      const out = await runOrt(r.initPath, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, S]) });
      expect(out.h.dims).toEqual([1, S, H]);
      const want = lmHeadRows(r.init, V, H, p);
      for (const [s, id] of ids.entries()) {
        // Exactly the dequantised rows: same codes, same scale and zero point, same float32 product.
        expect(Array.from(out.h.data.subarray(s * H, (s + 1) * H))).toEqual(Array.from(want.subarray(id * H, (id + 1) * H)));
      }
      // The rows the lookup returns differ from the float table by at most one quantisation step.
      let worst = 0;
      for (const id of ids) for (let k = 0; k < H; k++) worst = Math.max(worst, Math.abs(want[id * H + k] - r.E[id * H + k]));
      expect(worst).toBeGreaterThan(0);
      expect(worst).toBeLessThan(0.3 * 6 / 7);

      // The lm_head after it: float64 logits from the looked-up rows and the same dequantised table.
      let rel = 0;
      for (let s = 0; s < S; s++) for (let v = 0; v < V; v++) {
        let y = 0;
        let mag = 0;
        for (let k = 0; k < H; k++) { const t = out.h.data[s * H + k] * want[v * H + k]; y += t; mag += Math.abs(t); }
        rel = Math.max(rel, Math.abs(out.logits.data[s * V + v] - y) / (mag + 1e-12));
      }
      expect(rel).toBeLessThan(1e-5);
    });
  }

  it('writes the same bytes twice over', async () => {
    const p: RtnParams = { bits: 4, blockSize: 32, symmetric: false };
    const a = await quantizeTied(200, 64, p, 'range', 'det-a');
    const b = await quantizeTied(200, 64, p, 'range', 'det-b');
    for (const [x, y] of [[a.initPath, b.initPath], [a.stepPath, b.stepPath], [a.data, b.data]]) {
      expect(sha(new Uint8Array(await readFile(x)))).toBe(sha(new Uint8Array(await readFile(y))));
    }
  });

  it('leaves a lookup on an untied table alone when the table filter does not name it, and gives it its own table when it does', async () => {
    const dir = await tempDir('gbq-untied');
    const V = 100;
    const H = 64;
    const spec = tiedInit(V, H, randomFloats(V * H, 3, 0.3));
    spec.initializers.push({ name: 'L', dims: [V, H], data: randomFloats(V * H, 4, 0.3) });
    spec.nodes[2] = node('Gemm', ['h2', 'L'], ['logits'], { transB: 1, alpha: 1.0, beta: 1.0 }, '', 'lm_head/Gemm');
    const src = await saveWithExternalData(buildModel(spec), dir, 'm.onnx', 'm.data');
    const p: RtnParams = { bits: 4, blockSize: 32, symmetric: false };
    const run = async (tables: (n: string) => boolean, tag: string) => {
      const dst = join(dir, `${tag}.onnx`);
      const report = await transformGraphs({
        graphs: [{ src, dst }], dataFile: join(dir, `${tag}.data`), fuse: false, skipFusion: false,
        quantize: { ...p, accuracyLevel: 0, exclude: [] }, embedding: { params: p, tables }, threads: 1,
      });
      return { report, model: await loadModel(dst), dst };
    };
    const none = await run((n) => n === 'nothing', 'none');
    expect(none.model.graph.node.map((n) => n.opType)).toContain('Gather');
    const own = await run((n) => n === 'E', 'own');
    expect(own.report.graphs[0].gathers?.rewritten).toEqual([{ node: 'embed/Gather', table: 'E', V, H, sharedWith: null }]);
    const gbq = own.model.graph.node.find((n) => n.opType === 'GatherBlockQuantized')!;
    const mm = own.model.graph.node.find((n) => n.opType === 'MatMulNBits')!;
    expect(tensorBytes(init(own.model, gbq.input[0]), own.model.path)).not.toEqual(tensorBytes(init(own.model, mm.input[1]), own.model.path));
    const ids = [1, 2, 3, 4, 99];
    const out = await runOrt(own.dst, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, S]) });
    const E = spec.initializers[0].data as Float32Array;
    let worst = 0;
    for (const [s, id] of ids.entries()) for (let k = 0; k < H; k++) worst = Math.max(worst, Math.abs(out.h.data[s * H + k] - E[id * H + k]));
    expect(worst).toBeLessThan(0.3 * 6 / 7);
    expect(worst).toBeGreaterThan(0);
    // Its own table keeps float16 scales (exact: the codes were made from the rounded scales), and a
    // Cast widens the float16 rows the lookup returns; onnxruntime's rows equal our dequantisation
    // of the stored bytes to float16 rounding.
    const scalesInit = init(own.model, gbq.input[2]);
    expect(scalesInit.dataType).toBe(DataType.FLOAT16);
    const cast = own.model.graph.node.find((n) => n.input[0] === gbq.output[0]);
    expect(cast?.opType).toBe('Cast');
    const scales = f16BytesToF32(readTensorBytesSync(scalesInit, own.model.path));
    const rows = readTensorBytesSync(init(own.model, gbq.input[0]), own.model.path);
    const zps = readTensorBytesSync(init(own.model, gbq.input[3]), own.model.path);
    const mine = rtnDequantize({ B: rows, scales, zeroPoints: zps }, H, V, p); // [K=H, N=V]
    let off = 0;
    for (const [s, id] of ids.entries()) for (let k = 0; k < H; k++) {
      const want = mine[k * V + id];
      off = Math.max(off, Math.abs(out.h.data[s * H + k] - want) / (Math.abs(want) + 1e-6));
    }
    expect(off).toBeLessThan(2 ** -10);
  });
});
