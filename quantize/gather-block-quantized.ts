import {
  DataType, GraphIndex, dimsOf, ensureOpset, makeIntAttribute, readIntAttribute, tensorBytes, uniqueName, usedNodeNames,
  type LoadedModel, type Node, type Tensor,
} from '../common/onnx/index.js';
import { weightTask, type GeneratedTensor, type TaskRegistry, type WeightTask } from './matmul-nbits.js';
import { rtnShape, type RtnParams } from './rtn.js';

/**
 * Rewrites a token lookup `Gather(E[V, H], ids, axis 0)` on a float32 table into com.microsoft
 * GatherBlockQuantized over the table's block-quantised rows:
 *
 *   ids ──Gather(E)──▶ h        ─►   ids ──GatherBlockQuantized(E_rows, scales, zero_points)──▶ h
 *
 * (gather_axis 0, quantize_axis 1, block_size, bits). The quantised table is the very tensor a
 * tied lm_head's MatMulNBits reads: MatMulNBits takes W^T = E as N = V rows of K = H values, so E
 * rounded with the same parameters is the same weight task (matmul-nbits.ts `weightTask`), and
 * the writer stores its bytes once, however many initializers name them:
 *   MatMulNBits B       uint8 [V, blocks, blob]   ┐ one byte range of the data file
 *   GatherBlockQuantized uint8 [V, blocks * blob] ┘ (two views of it: `share: 'range'`)
 *   scales float32 [V, blocks] and zero points uint8 [V, ceil(blocks / 2)]: the same initializers.
 * Rows are packed low nibble first along H in both ops, zero points likewise along the blocks.
 *
 * `share: 'reshape'` instead names the table once, 2-D, and feeds MatMulNBits through a
 * Reshape to [V, blocks, blob] (the arrangement shared/ECOSYSTEM.md measured); investigation/
 * INVESTIGATION.md compares the resident memory of both.
 *
 * When H is not a multiple of the block size the stored rows carry the last block's padding
 * (codes at the zero point, so they dequantise to 0); the lookup then reads blocks * block_size
 * values per row and a Slice keeps the first H.
 *
 * A table no MatMulNBits shares (an untied head: the forced aligner) keeps its scales in float16,
 * half the bytes: the scales are rounded to float16 before the codes are made from them (rtn.ts
 * `halfScales`), the lookup returns float16 rows (GatherBlockQuantized's output takes the scales'
 * type) and a Cast widens them. The Cast runs on the looked-up rows, so nothing depends on
 * onnxruntime folding constants (MatMulNBits cannot do this: its scales must match its float32
 * input, and a Cast in front of them gave wrong results with graph optimisations off, entry 36).
 *
 *   ids ──GatherBlockQuantized(E_rows, scales_f16, zero_points)──▶ h_f16 ──Cast(float)──▶ h
 */

export interface GatherQuantizeOptions {
  params: RtnParams;
  /** Which tables to rewrite, by initializer (checkpoint) name. */
  tables: (name: string) => boolean;
  /** How the lookup and a MatMulNBits over the same task name the table (default 'range'). */
  share?: 'range' | 'reshape';
}

export interface GatherQuantizeReport {
  rewritten: { node: string; table: string; V: number; H: number; sharedWith: string | null }[];
}

export function quantizeEmbeddingGathers(
  loaded: LoadedModel, opts: GatherQuantizeOptions, registry: TaskRegistry, generated: Map<string, GeneratedTensor>,
): GatherQuantizeReport {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const report: GatherQuantizeReport = { rewritten: [] };
  const p = opts.params;
  if (p.bits !== 4 && p.bits !== 8) throw new Error(`GatherBlockQuantized: bits ${p.bits}`);
  const nodeNames = usedNodeNames(graph.node);
  const valueNames = new Set<string>([...idx.initializers.keys(), ...idx.producer.keys()]);
  for (const i of graph.input) if (i.name) valueNames.add(i.name);
  const newInits: Tensor[] = [];
  /** Initializers of this graph, the ones this pass adds included. */
  const declared = new Set<string>(idx.initializers.keys());
  const declare = (t: Tensor): void => { newInits.push(t); declared.add(t.name); };
  const replace = new Map<Node, Node[]>();
  /** Per task: the lookup's table initializer (one per graph however many lookups read it). */
  const rowsFor = new Map<WeightTask, string>();

  for (const node of graph.node) {
    if (node.opType !== 'Gather' || node.domain !== '' || node.input.length !== 2 || node.output.length !== 1) continue;
    if (readIntAttribute(node, 'axis', 0) !== 0) continue;
    const table = idx.initializers.get(node.input[0]);
    if (!table || table.dataType !== DataType.FLOAT || !opts.tables(table.name)) continue;
    const d = dimsOf(table);
    if (d.length !== 2) continue;
    const [V, H] = d;
    const source = tensorBytes(table, loaded.path);
    const shape = rtnShape(H, V, p);
    const rowBytes = shape.nBlocks * shape.blobSize;
    const fresh = (base: string): string => uniqueName(valueNames, base);

    // A MatMulNBits of this graph over the same task (the tied lm_head): reuse its tensors.
    const existingOf = (t: WeightTask, part: GeneratedTensor['part']): string | undefined => {
      for (const [name, g] of generated) if (g.part === part && g.tasks.length === 1 && g.tasks[0] === t && declared.has(name)) return name;
      return undefined;
    };
    const sharedTask = weightTask(registry, source, 'NK', H, V, p, table.name);
    const halfScales = existingOf(sharedTask, 'B') === undefined;
    const task = halfScales ? weightTask(registry, source, 'NK', H, V, { ...p, halfScales: true }, table.name) : sharedTask;
    const existing = (part: GeneratedTensor['part']): string | undefined => existingOf(task, part);
    const matmulB = existing('B');
    const sharedWith = matmulB ? graph.node.find((n) => n.opType === 'MatMulNBits' && n.input[1] === matmulB)?.name ?? null : null;
    let rows = rowsFor.get(task);
    if (!rows) {
      rows = fresh(`${table.name}_Q${p.bits}_rows`);
      rowsFor.set(task, rows);
      declare({ name: rows, dataType: DataType.UINT8, dims: [V, rowBytes] });
      generated.set(rows, { tasks: [task], part: 'B' });
    }
    let scales = existing('scales');
    if (!scales) {
      scales = fresh(`${table.name}_scales`);
      declare({ name: scales, dataType: halfScales ? DataType.FLOAT16 : DataType.FLOAT, dims: [V, shape.nBlocks] });
      generated.set(scales, { tasks: [task], part: 'scales' });
    }
    let zeroPoints: string | undefined;
    if (!p.symmetric) {
      zeroPoints = existing('zeroPoints');
      if (!zeroPoints) {
        zeroPoints = fresh(`${table.name}_zero_points`);
        declare({ name: zeroPoints, dataType: DataType.UINT8, dims: [V, shape.zpCols] });
        generated.set(zeroPoints, { tasks: [task], part: 'zeroPoints' });
      }
    }
    const padded = shape.nBlocks * p.blockSize !== H;
    const out = node.output[0];
    const sliceIn = padded ? fresh(`${out}/padded`) : out;
    const lookupOut = halfScales ? fresh(`${sliceIn}/f16`) : sliceIn;
    const name = uniqueName(nodeNames, node.name ? `${node.name}_Q${p.bits}` : `GatherBlockQuantized_${out}`);
    const nodes: Node[] = [{
      name, opType: 'GatherBlockQuantized', domain: 'com.microsoft',
      input: [rows, node.input[1], scales, ...(zeroPoints ? [zeroPoints] : [])],
      output: [lookupOut],
      attribute: [
        makeIntAttribute('gather_axis', 0), makeIntAttribute('quantize_axis', 1),
        makeIntAttribute('block_size', p.blockSize), makeIntAttribute('bits', p.bits),
      ],
    }];
    if (halfScales) {
      nodes.push({
        name: uniqueName(nodeNames, `${name}/Cast`), opType: 'Cast', domain: '',
        input: [lookupOut], output: [sliceIn], attribute: [makeIntAttribute('to', DataType.FLOAT)],
      });
    }
    if (padded) {
      const int64 = (base: string, v: number): string => {
        const n = fresh(`${name}/${base}`);
        declare({ name: n, dataType: DataType.INT64, dims: [1], rawData: new Uint8Array(new BigInt64Array([BigInt(v)]).buffer) });
        return n;
      };
      nodes.push({
        name: uniqueName(nodeNames, `${name}/Slice`), opType: 'Slice', domain: '',
        input: [sliceIn, int64('starts', 0), int64('ends', H), int64('axes', -1)], output: [out], attribute: [],
      });
    }
    replace.set(node, nodes);
    report.rewritten.push({ node: node.name, table: table.name, V, H, sharedWith });
  }
  if (replace.size === 0) return report;
  graph.node = graph.node.flatMap((n) => replace.get(n) ?? [n]);
  graph.initializer = [...graph.initializer, ...newInits];
  ensureOpset(loaded.model, 'com.microsoft', 1);
  if ((opts.share ?? 'range') === 'reshape') feedMatMulsFromRows(loaded, rowsFor, generated);
  return report;
}

/**
 * `share: 'reshape'`: every MatMulNBits whose B is a task the lookup also reads takes the lookup's
 * 2-D table through Reshape([V, blocks, blob]) instead of its own 3-D initializer (then pruned).
 */
function feedMatMulsFromRows(loaded: LoadedModel, rowsFor: Map<WeightTask, string>, generated: Map<string, GeneratedTensor>): void {
  const graph = loaded.graph;
  const idx = new GraphIndex(graph, loaded.path);
  const nodeNames = usedNodeNames(graph.node);
  const valueNames = new Set<string>([...idx.initializers.keys(), ...idx.producer.keys()]);
  const added: Tensor[] = [];
  const before = new Map<Node, Node>();
  for (const node of graph.node) {
    if (node.opType !== 'MatMulNBits' || node.domain !== 'com.microsoft') continue;
    const g = generated.get(node.input[1]);
    const rows = g && g.tasks.length === 1 ? rowsFor.get(g.tasks[0]) : undefined;
    const b = idx.initializers.get(node.input[1]);
    if (!rows || !b) continue;
    const shapeName = uniqueName(valueNames, `${node.name}/B_shape`);
    added.push({ name: shapeName, dataType: DataType.INT64, dims: [3], rawData: new Uint8Array(new BigInt64Array(dimsOf(b).map(BigInt)).buffer) });
    const reshaped = uniqueName(valueNames, `${node.name}/B`);
    before.set(node, { name: uniqueName(nodeNames, `${node.name}/ReshapeB`), opType: 'Reshape', domain: '', input: [rows, shapeName], output: [reshaped], attribute: [] });
    node.input[1] = reshaped;
  }
  graph.node = graph.node.flatMap((n) => { const r = before.get(n); return r ? [r, n] : [n]; });
  graph.initializer = [...graph.initializer, ...added];
}
