/**
 * The floor of an int4 decoder_step on this machine: a graph holding only the step's weight
 * MatMulNBits nodes (every layer's q/k/v/o/gate/up/down and the lm_head, at the preset's real
 * shapes, one token), each fed from a graph input and returning its own output. Nothing else
 * runs, so its time is what onnxruntime's int4 kernels need to read the weights, whatever the
 * rest of the graph does. Sweeps block size, symmetric/asymmetric, accuracy_level and intra-op
 * threads; reports ms per run and the weight bytes read per second. (not a test)
 *
 *   node dist/investigation/matmulnbits-probe.js --preset 0.6b [--blocks 32,64,128] [--acc 0,4]
 *     [--sym both|yes|no] [--threads 1,2] [--part all|layers|lm_head] [--merged] [--reps 15]
 *
 * --merged: q/k/v and gate/up as one MatMulNBits each (fewer, wider nodes).
 *
 * Weights are random bytes: MatMulNBits' speed does not depend on the values.
 */
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { AttrType, DataType, onnx as OnnxProto, type NodeProto, type TensorProto } from '../common/onnx/index.js';
import { Prng } from '../common/prng.js';
import { median } from './stats.js';

interface Shape { name: string; K: number; N: number }

const PRESETS: Record<string, { layers: number; hidden: number; qDim: number; kvDim: number; ffn: number; vocab: number }> = {
  '0.6b': { layers: 28, hidden: 1024, qDim: 2048, kvDim: 1024, ffn: 3072, vocab: 151936 },
  '1.7b': { layers: 28, hidden: 2048, qDim: 2048, kvDim: 1024, ffn: 6144, vocab: 151936 },
};

function stepShapes(preset: string, part: string, merged: boolean): Shape[] {
  const p = PRESETS[preset];
  if (!p) throw new Error(`unknown preset ${preset}`);
  const shapes: Shape[] = [];
  if (part !== 'lm_head') {
    for (let l = 0; l < p.layers; l++) {
      if (merged) {
        // q|k|v and gate|up as one weight each, as a packed-projection export would store them.
        shapes.push(
          { name: `l${l}.qkv`, K: p.hidden, N: p.qDim + 2 * p.kvDim }, { name: `l${l}.o`, K: p.qDim, N: p.hidden },
          { name: `l${l}.gate_up`, K: p.hidden, N: 2 * p.ffn }, { name: `l${l}.down`, K: p.ffn, N: p.hidden },
        );
        continue;
      }
      shapes.push(
        { name: `l${l}.q`, K: p.hidden, N: p.qDim }, { name: `l${l}.k`, K: p.hidden, N: p.kvDim },
        { name: `l${l}.v`, K: p.hidden, N: p.kvDim }, { name: `l${l}.o`, K: p.qDim, N: p.hidden },
        { name: `l${l}.gate`, K: p.hidden, N: p.ffn }, { name: `l${l}.up`, K: p.hidden, N: p.ffn },
        { name: `l${l}.down`, K: p.ffn, N: p.hidden },
      );
    }
  }
  if (part !== 'layers') shapes.push({ name: 'lm_head', K: p.hidden, N: p.vocab });
  return shapes;
}

function randomBytes(rng: Prng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = rng.nextU32();
    out[i] = v & 255; if (i + 1 < n) out[i + 1] = (v >>> 8) & 255;
    if (i + 2 < n) out[i + 2] = (v >>> 16) & 255; if (i + 3 < n) out[i + 3] = v >>> 24;
  }
  return out;
}

function tensor(name: string, dataType: number, dims: number[], raw: Uint8Array): TensorProto {
  return OnnxProto.TensorProto.create({ name, dataType, dims, rawData: raw });
}

/** Builds the probe graph; returns its bytes and the weight bytes one run reads. */
function buildProbe(shapes: Shape[], block: number, acc: number, symmetric: boolean): { model: Uint8Array; weightBytes: number } {
  const rng = new Prng(7);
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  const inputs = new Map<number, string>();
  const outputs: string[] = [];
  let weightBytes = 0;
  for (const s of shapes) {
    if (!inputs.has(s.K)) inputs.set(s.K, `x${s.K}`);
    const blocks = Math.ceil(s.K / block);
    const b = tensor(`${s.name}.B`, DataType.UINT8, [s.N, blocks, block / 2], randomBytes(rng, s.N * blocks * block / 2));
    const scales = new Float32Array(s.N * blocks);
    for (let i = 0; i < scales.length; i++) scales[i] = 0.001 + 0.01 * rng.next();
    const sc = tensor(`${s.name}.scales`, DataType.FLOAT, [s.N * blocks], new Uint8Array(scales.buffer));
    const ins = [inputs.get(s.K)!, b.name!, sc.name!];
    inits.push(b, sc);
    weightBytes += s.N * blocks * (block / 2) + scales.byteLength;
    if (!symmetric) {
      const zpBytes = s.N * Math.ceil(blocks / 2);
      inits.push(tensor(`${s.name}.zp`, DataType.UINT8, [zpBytes], randomBytes(rng, zpBytes)));
      ins.push(`${s.name}.zp`);
      weightBytes += zpBytes;
    }
    const out = `${s.name}.y`;
    outputs.push(out);
    nodes.push(OnnxProto.NodeProto.create({
      opType: 'MatMulNBits', domain: 'com.microsoft', name: `${s.name}/MatMulNBits`, input: ins, output: [out],
      attribute: [
        { name: 'K', type: AttrType.INT, i: s.K }, { name: 'N', type: AttrType.INT, i: s.N },
        { name: 'bits', type: AttrType.INT, i: 4 }, { name: 'block_size', type: AttrType.INT, i: block },
        { name: 'accuracy_level', type: AttrType.INT, i: acc },
      ],
    }));
  }
  const valueInfo = (name: string, dims: number[]) => OnnxProto.ValueInfoProto.create({
    name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  const graph = OnnxProto.GraphProto.create({
    name: 'matmulnbits_probe', node: nodes, initializer: inits,
    input: [...inputs.entries()].map(([k, n]) => valueInfo(n, [1, k])),
    output: shapes.map((s) => valueInfo(`${s.name}.y`, [1, s.N])),
  });
  const model = OnnxProto.ModelProto.create({
    irVersion: 8, graph,
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
  });
  return { model: OnnxProto.ModelProto.encode(model).finish(), weightBytes };
}

const list = (s: string): number[] => s.split(',').map(Number);
const f = new Command('matmulnbits-probe')
  .option('--preset <p>', '0.6b or 1.7b', '0.6b').option('--blocks <list>', 'block sizes', '32,64,128')
  .option('--acc <list>', 'accuracy levels', '0,4').option('--sym <which>', 'both, yes or no', 'both')
  .option('--threads <list>', 'intra-op threads', '1,2').option('--part <part>', 'all, layers or lm_head', 'all')
  .option('--merged', 'q|k|v and gate|up as one weight each').option('--reps <n>', 'timed runs per configuration', '15')
  .parse(process.argv)
  .opts<{ preset: string; blocks: string; acc: string; sym: string; threads: string; part: string; merged?: boolean; reps: string }>();

const shapes = stepShapes(f.preset, f.part, f.merged ?? false);
const syms = f.sym === 'both' ? [false, true] : [f.sym === 'yes'];
console.log(`| block | symmetric | accuracy_level | threads | ms / run (median of ${f.reps}) | weight MB | GB/s |`);
console.log('|---|---|---|---|---|---|---|');
for (const block of list(f.blocks)) {
  for (const sym of syms) {
    for (const acc of list(f.acc)) {
      const { model, weightBytes } = buildProbe(shapes, block, acc, sym);
      for (const threads of list(f.threads)) {
        const session = await ort.InferenceSession.create(model, {
          intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
        });
        const feeds: Record<string, ort.Tensor> = {};
        for (const name of session.inputNames) {
          const k = Number(name.slice(1));
          feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: k }, (_, i) => Math.sin(i)), [1, k]);
        }
        for (let i = 0; i < 3; i++) await session.run(feeds);
        const times: number[] = [];
        for (let i = 0; i < Number(f.reps); i++) {
          const t0 = performance.now();
          await session.run(feeds);
          times.push(performance.now() - t0);
        }
        const ms = median(times);
        console.log(`| ${block} | ${sym ? 'yes' : 'no'} | ${acc} | ${threads} | ${ms.toFixed(2)} | ${(weightBytes / 1e6).toFixed(1)} | ${(weightBytes / 1e6 / ms).toFixed(1)} |`);
        await session.release();
      }
    }
  }
}
