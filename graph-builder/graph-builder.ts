/**
 * GraphBuilder: a typed, name-disciplined way to write an ONNX graph node by node.
 *
 * Usage:
 *   const b = new GraphBuilder('decoder_step', { weights: store });
 *   const x = b.input('input_embeds', 'float32', ['batch', 1, H]);
 *   const attn = b.scope('/model/layers.0/attn');               // a view sharing the graph
 *   const w = await attn.weight('thinker....q_proj.weight', 'float32', [H, Q], () => data);
 *   const q = attn.scope('q_proj').op('MatMul', [x, w]);         // node "/model/layers.0/attn/q_proj/MatMul",
 *                                                                // output ".../MatMul/output_0"
 *   const [a, b2] = b.node('Split', [x, b.constInt64([2, 2])], { outputs: 2, attrs: { axis: -1 } });
 *   b.output('logits', 'float32', ['batch', 1, V], logitsValue);  // renames the producing node's output
 *   const bytes = modelBytes(b);                                  // model.ts
 *
 * Names: nodes are `<scope>/<name or op type>`, made unique with `_1`, `_2`...; outputs are
 * `<node name>/output_<i>` unless given. Constants are initializers created once per graph,
 * deduplicated by dtype + dims + bytes (`/model/constants/int64/[2]/1_-1`).
 * Attributes: integer numbers -> INT, number[] -> INTS, string -> STRING; floats must be
 * explicit (`floatAttrValue(1e-6)`, `floatsAttrValue([...])`) so 1.0 never silently becomes an INT.
 * Every node input must already exist (graph input, initializer or earlier node output):
 * building is in topological order by construction, and a typo fails at once.
 */
import { createHash } from 'node:crypto';
import {
  onnx, bytesPerElement, copyBytes, dataTypeOf, elementCount, uniqueName,
  type AttributeProto, type DType, type Dim, type GraphProto, type NodeProto, type TensorProto, type ValueInfoProto,
} from '../common/onnx/index.js';
import { externalTensorProto, type StoredTensor, type TensorData, type WeightStore } from './weight-store.js';

/** An explicitly float-typed attribute. */
export interface FloatAttr { kind: 'float'; value: number }
export interface FloatsAttr { kind: 'floats'; value: number[] }
export interface TensorAttr { kind: 'tensor'; value: TensorProto }
export type AttrValue = number | number[] | string | string[] | FloatAttr | FloatsAttr | TensorAttr;

/** Attribute values for `attrs` that are not plain integers, strings or int lists. */
export const floatAttrValue = (value: number): FloatAttr => ({ kind: 'float', value });
export const floatsAttrValue = (value: number[]): FloatsAttr => ({ kind: 'floats', value });
export const tensorAttrValue = (value: TensorProto): TensorAttr => ({ kind: 'tensor', value });

export interface NodeOptions {
  /** How many outputs (auto-named) or their exact names. Default 1. */
  outputs?: number | string[];
  attrs?: Record<string, AttrValue>;
  /** Operator domain: '' (default ONNX) or 'com.microsoft'. */
  domain?: string;
  /** Node name inside the current scope (default: the op type). */
  name?: string;
}

/** Typed arrays a constant or initializer may be built from. */
export type TensorArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Int8Array | Uint8Array | Uint16Array;

const AT = onnx.AttributeProto.AttributeType;

/** A Slice end meaning "to the end of the axis" (Slice clamps; any value >= the dim works). */
export const INT64_END = Number.MAX_SAFE_INTEGER;

/** State shared by a graph and all its scoped views. */
class GraphState {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  readonly nodeNames = new Set<string>();
  /** Every value that exists so far. */
  readonly values = new Set<string>();
  /** value name -> node producing it (graph inputs and initializers are absent). */
  readonly producer = new Map<string, NodeProto>();
  readonly constants = new Map<string, string>();
  readonly domains = new Set<string>();
  constructor(readonly name: string, readonly weights: WeightStore | undefined) {}
}

export class GraphBuilder {
  private readonly g: GraphState;
  /** The name prefix of this view ('' at the root, else '/a/b'). */
  readonly prefix: string;

  constructor(name: string, opts?: { weights?: WeightStore });
  /** @internal scoped views (see scope()). */
  constructor(name: GraphState, opts: { prefix: string });
  constructor(name: string | GraphState, opts: { weights?: WeightStore; prefix?: string } = {}) {
    this.g = typeof name === 'string' ? new GraphState(name, opts.weights) : name;
    this.prefix = opts.prefix ?? '';
  }

  get graphName(): string { return this.g.name; }
  get weights(): WeightStore | undefined { return this.g.weights; }

  /** A view whose nodes are named under `path` (relative to this view; absolute when it starts with '/'). */
  scope(path: string): GraphBuilder {
    const trimmed = path.replace(/\/+$/, '');
    const prefix = trimmed.startsWith('/') ? trimmed : `${this.prefix}/${trimmed}`;
    return new GraphBuilder(this.g, { prefix });
  }

  /** Declares a graph input and returns its name. */
  input(name: string, dtype: DType, dims: readonly Dim[]): string {
    this.claimValue(name);
    this.g.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  /**
   * Declares a graph output. With `from`, the value `from` becomes the output: the node that
   * produces it is renamed to write `name` directly (an Identity is added only when `from` is
   * a graph input or an initializer).
   */
  output(name: string, dtype: DType, dims: readonly Dim[], from?: string): string {
    if (from !== undefined && from !== name) {
      const node = this.g.producer.get(from);
      if (node && !this.g.outputs.some((o) => o.name === from)) {
        this.claimValue(name);
        this.renameValue(from, name, node);
      } else {
        this.node('Identity', [from], { outputs: [name], name: `output_${name}` });
      }
    } else if (!this.g.values.has(name)) {
      throw new Error(`graph output ${name} is never produced`);
    }
    this.g.outputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  /** Adds a node; returns its output names. */
  node(op: string, inputs: readonly string[], opts: NodeOptions = {}): string[] {
    for (const i of inputs) {
      if (i !== '' && !this.g.values.has(i)) throw new Error(`${this.prefix}/${opts.name ?? op}: unknown input "${i}"`);
    }
    const nodeName = this.uniqueNodeName(`${this.prefix}/${opts.name ?? op}`);
    const outputs = typeof opts.outputs === 'object'
      ? [...opts.outputs]
      : Array.from({ length: opts.outputs ?? 1 }, (_, k) => `${nodeName}/output_${k}`);
    for (const o of outputs) this.claimValue(o);
    const domain = opts.domain ?? '';
    const node = onnx.NodeProto.create({
      name: nodeName,
      opType: op,
      input: [...inputs],
      output: outputs,
      attribute: Object.keys(opts.attrs ?? {}).sort().map((k) => makeAttribute(k, (opts.attrs as Record<string, AttrValue>)[k])),
      ...(domain ? { domain } : {}),
    });
    this.g.nodes.push(node);
    this.g.domains.add(domain);
    for (const o of outputs) this.g.producer.set(o, node);
    return outputs;
  }

  /** Adds a single-output node and returns that output. */
  op(op: string, inputs: readonly string[], opts: Omit<NodeOptions, 'outputs'> & { output?: string } = {}): string {
    return this.node(op, inputs, { ...opts, outputs: opts.output ? [opts.output] : 1 })[0];
  }

  /** An int64 constant: a number gives a scalar, an array a 1-D tensor (or `dims`). */
  constInt64(values: number | readonly number[], dims?: readonly number[]): string {
    const arr = typeof values === 'number' ? [values] : values;
    for (const v of arr) if (!Number.isSafeInteger(v)) throw new Error(`constInt64: ${v} is not a safe integer (use INT64_END for "to the end")`);
    return this.constTensor('int64', dims ?? (typeof values === 'number' ? [] : [arr.length]), BigInt64Array.from(arr.map((v) => BigInt(v))));
  }

  /** A float32 constant: a number gives a scalar, an array a 1-D tensor (or `dims`). */
  constFloat(values: number | readonly number[] | Float32Array, dims?: readonly number[]): string {
    const arr = typeof values === 'number' ? Float32Array.of(values) : Float32Array.from(values);
    return this.constTensor('float32', dims ?? (typeof values === 'number' ? [] : [arr.length]), arr);
  }

  /** A constant of any dtype, created once per graph (dedup by dtype + dims + bytes). */
  constTensor(dtype: DType, dims: readonly number[], data: TensorArray): string {
    const bytes = copyBytes(data);
    checkSize(`constant ${dtype}[${dims}]`, dtype, dims, bytes.byteLength);
    const key = `${dtype}|${dims.join(',')}|${Buffer.from(bytes).toString('base64')}`;
    const found = this.g.constants.get(key);
    if (found) return found;
    const name = constantName(dtype, dims, data, bytes);
    this.claimValue(name);
    this.g.initializers.push(inlineTensor(name, dtype, dims, bytes));
    this.g.constants.set(key, name);
    return name;
  }

  /** A named initializer stored inside the .onnx file. */
  initializer(name: string, dtype: DType, dims: readonly number[], data: TensorArray): string {
    const bytes = copyBytes(data);
    checkSize(`initializer ${name}`, dtype, dims, bytes.byteLength);
    this.claimValue(name);
    this.g.initializers.push(inlineTensor(name, dtype, dims, bytes));
    return name;
  }

  /**
   * A weight in the external data file. `produce` runs only when the store does not hold
   * `name` yet (so two graphs sharing a store share the bytes); returns the initializer name.
   * Calling it twice for the same graph returns the same initializer.
   */
  async weight(name: string, dtype: DType, dims: readonly number[], produce: () => TensorData | Promise<TensorData>): Promise<string> {
    const store = this.g.weights;
    if (!store) throw new Error(`graph ${this.g.name} has no weight store for ${name}`);
    if (this.g.values.has(name)) {
      if (this.g.producer.has(name) || !this.g.initializers.some((t) => t.name === name)) throw new Error(`weight name ${name} clashes with a value`);
      return name;
    }
    const stored = await store.add(name, dtype, dims, produce);
    return this.addExternalInitializer(stored);
  }

  /** Adds an initializer that points into a weight store (used by `weight`, or to share one explicitly). */
  addExternalInitializer(stored: StoredTensor): string {
    this.claimValue(stored.name);
    this.g.initializers.push(externalTensorProto(stored));
    return stored.name;
  }

  /** Domains used by the nodes so far ('' is the default ONNX domain), sorted. */
  usedDomains(): string[] {
    return [...this.g.domains].sort();
  }

  /** The finished graph. Inputs, outputs, nodes and initializers keep their creation order. */
  toGraphProto(): GraphProto {
    if (this.g.outputs.length === 0) throw new Error(`graph ${this.g.name} has no outputs`);
    return onnx.GraphProto.create({
      name: this.g.name,
      node: this.g.nodes,
      initializer: this.g.initializers,
      input: this.g.inputs,
      output: this.g.outputs,
    });
  }

  /** Counts for reports and tests. */
  stats(): { nodes: number; initializers: number; inputs: number; outputs: number } {
    return { nodes: this.g.nodes.length, initializers: this.g.initializers.length, inputs: this.g.inputs.length, outputs: this.g.outputs.length };
  }

  private claimValue(name: string): void {
    if (!name) throw new Error('empty value name');
    if (this.g.values.has(name)) throw new Error(`value name ${name} defined twice in graph ${this.g.name}`);
    this.g.values.add(name);
  }

  private uniqueNodeName(base: string): string {
    return uniqueName(this.g.nodeNames, base);
  }

  private renameValue(from: string, to: string, producer: NodeProto): void {
    producer.output = (producer.output ?? []).map((o) => (o === from ? to : o));
    for (const n of this.g.nodes) {
      if (n.input?.includes(from)) n.input = n.input.map((i) => (i === from ? to : i));
    }
    this.g.values.delete(from);
    this.g.producer.delete(from);
    this.g.producer.set(to, producer);
  }
}

function valueInfo(name: string, dtype: DType, dims: readonly Dim[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: dataTypeOf(dtype),
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create(typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        }),
      }),
    }),
  });
}

function inlineTensor(name: string, dtype: DType, dims: readonly number[], bytes: Uint8Array): TensorProto {
  return onnx.TensorProto.create({ name, dims: [...dims], dataType: dataTypeOf(dtype), rawData: bytes });
}

function checkSize(what: string, dtype: DType, dims: readonly number[], byteLength: number): void {
  const want = elementCount(dims) * bytesPerElement(dtype);
  if (want !== byteLength) throw new Error(`${what}: ${byteLength} bytes do not match dims [${dims}]`);
}

/** Readable names for small constants, a content hash for big ones. */
function constantName(dtype: DType, dims: readonly number[], data: TensorArray, bytes: Uint8Array): string {
  const shape = `[${dims.join(',')}]`;
  if (elementCount(dims) <= 8) {
    const vals = Array.from(data as ArrayLike<number | bigint>, (v) => String(v)).join('_');
    return `/model/constants/${dtype}/${shape}/${vals}`;
  }
  return `/model/constants/${dtype}/${shape}/${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`;
}

function makeAttribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}=${v}: use floatAttrValue() for float attributes`);
    return onnx.AttributeProto.create({ name, type: AT.INT, i: v });
  }
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: AT.STRING, s: Buffer.from(v, 'utf8') });
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'string')) {
      return onnx.AttributeProto.create({ name, type: AT.STRINGS, strings: (v as string[]).map((x) => Buffer.from(x, 'utf8')) });
    }
    const ints = v as number[];
    if (!ints.every((x) => Number.isInteger(x))) throw new Error(`attribute ${name}: use floatsAttrValue() for float lists`);
    return onnx.AttributeProto.create({ name, type: AT.INTS, ints });
  }
  switch (v.kind) {
    case 'float': return onnx.AttributeProto.create({ name, type: AT.FLOAT, f: v.value });
    case 'floats': return onnx.AttributeProto.create({ name, type: AT.FLOATS, floats: v.value });
    case 'tensor': return onnx.AttributeProto.create({ name, type: AT.TENSOR, t: v.value });
  }
}
