import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import onnxProto from 'onnx-proto';
import type { onnx as O } from 'onnx-proto';
import { UserError, fsError } from '../common/errors.js';
import { dimsFromConfig, describeZodError, readCheckpointConfigWithFormat, type ModelDims } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { checkCheckpoint, expectedTensors } from '../checkpoint/expected-tensors.js';
import { checkOptionsFor, checkTensorNamesMatch } from '../checkpoint/open-checkpoint.js';
import { HfTensorSource } from '../checkpoint/renamed-source.js';
import type { CheckpointFormat } from '../checkpoint/tensor-names.js';
import { INDEX_FILE, openSafetensors, openSafetensorsFile, SINGLE_FILE } from '../checkpoint/safetensors.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { emitResult, type CommonOptions } from './output.js';
import { detectLayout, type Layout } from '../model-dir/layout.js';
import { modelDirKind, type ModelDirKind } from '../model-dir/aligner.js';
import { CONFIG_FILE } from '../model-dir/files.js';
import { elementBytes, toNumber } from '../common/onnx/index.js';

/**
 * `qwen3-onnx inspect PATH`: what is in a Hugging Face checkpoint directory, a .safetensors
 * file, an .onnx graph or an exported model directory. Reads headers and graph protos only;
 * tensor data and external-data files are never loaded.
 */

const { onnx } = onnxProto;

// ---------- safetensors ----------

export interface TensorSummary {
  count: number;
  /** Tensors per dtype, keys sorted. */
  dtypes: Record<string, number>;
  bytes: number;
  parameters: number;
  files: string[];
}

export interface CheckpointInspection {
  kind: 'checkpoint';
  path: string;
  /** Which official layout: 'original' (thinker.*) or the transformers-native 'hf'. */
  format: CheckpointFormat;
  config: ModelDims;
  tensors: TensorSummary;
  validation: {
    ok: boolean; expected: number; matched: number; problems: string[]; extras: string[];
    ignoredTiedLmHead: boolean;
  };
}

export interface SafetensorsInspection { kind: 'safetensors'; path: string; tensors: TensorSummary }

const sortedRecord = (m: Map<string, number>): Record<string, number> =>
  Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

function summarizeTensors(src: TensorSource): TensorSummary {
  const dtypes = new Map<string, number>();
  const files = new Set<string>();
  let bytes = 0;
  let parameters = 0;
  for (const t of src.list()) {
    dtypes.set(t.dtype, (dtypes.get(t.dtype) ?? 0) + 1);
    files.add(basename(t.file));
    bytes += t.byteLength;
    parameters += t.shape.reduce((a, b) => a * b, 1);
  }
  return { count: src.list().length, dtypes: sortedRecord(dtypes), bytes, parameters, files: [...files].sort() };
}

async function inspectCheckpoint(dir: string): Promise<CheckpointInspection> {
  const { format, config, file } = await readCheckpointConfigWithFormat(dir);
  const dims = dimsFromConfig(config);
  const src = await openSafetensors(dir);
  try {
    checkTensorNamesMatch(src, format, file, dir);
    const report = checkCheckpoint(format === 'hf' ? new HfTensorSource(src, dir) : src, dims, checkOptionsFor(format, dims.aligner ? 'forced_aligner' : 'asr'));
    return {
      kind: 'checkpoint', path: dir, format, config: dims, tensors: summarizeTensors(src),
      validation: {
        ok: report.problems.length === 0, expected: expectedTensors(dims).size, matched: report.matched,
        problems: report.problems, extras: report.extras, ignoredTiedLmHead: report.ignoredTiedLmHead,
      },
    };
  } finally {
    await src.close();
  }
}

async function inspectSafetensorsFile(file: string): Promise<SafetensorsInspection> {
  const src = await openSafetensorsFile(file);
  try {
    return { kind: 'safetensors', path: file, tensors: summarizeTensors(src) };
  } finally {
    await src.close();
  }
}

// ---------- ONNX ----------

export interface ValueSummary { name: string; type: string; dims: (number | string)[] }

export interface GraphInspection {
  file: string;
  bytes: number;
  irVersion: number;
  producer: string;
  /** `domain:version`, the default domain written as `ai.onnx`. */
  opsets: string[];
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  /** Nodes including those inside subgraphs (If/Loop/Scan bodies). */
  nodes: number;
  /** Nodes per op type (`domain.Op` outside the default domain), keys sorted. */
  ops: Record<string, number>;
  initializers: { count: number; bytes: number; inlineBytes: number; externalBytes: number };
  externalData: { file: string; tensors: number; bytes: number; exists: boolean }[];
}

export interface OnnxInspection { kind: 'onnx'; path: string; graphs: GraphInspection[] }

export interface ModelDirInspection {
  kind: 'model';
  path: string;
  /** split (the contract) or sherpa-onnx (model-dir/layout.ts). */
  layout: Layout;
  /** What config.json says the directory holds (model_kind; absent means asr). */
  modelKind: ModelDirKind;
  /** Problems with config.json against the output contract (empty when it conforms). */
  configProblems: string[];
  files: { name: string; bytes: number }[];
  graphs: GraphInspection[];
}

type Inspection = CheckpointInspection | SafetensorsInspection | OnnxInspection | ModelDirInspection;

const DATA_TYPE_NAMES = new Map<number, string>(
  Object.entries(onnx.TensorProto.DataType).map(([name, id]) => [id as number, name.toLowerCase()]),
);

/** protobufjs hands int64 fields over as number or Long (the ONNX layer's toNumber). */
type Int64 = number | { toNumber(): number } | null | undefined;
const num = (v: Int64): number => toNumber(v);

/** Bytes per element from the ONNX layer's one table; 0 for types it does not size. */
function elementBytesOrZero(dataType: number): number {
  try { return elementBytes(dataType); } catch { return 0; }
}

function typeName(t: O.ITypeProto | null | undefined): { type: string; dims: (number | string)[] } {
  const tensor = t?.tensorType;
  if (!tensor) return { type: t?.sequenceType ? 'sequence' : t?.mapType ? 'map' : 'unknown', dims: [] };
  const type = DATA_TYPE_NAMES.get(tensor.elemType ?? 0) ?? `type${tensor.elemType}`;
  const dims = (tensor.shape?.dim ?? []).map((d) =>
    d.dimParam ? d.dimParam : d.dimValue != null ? num(d.dimValue) : '?');
  return { type, dims };
}

const valueSummary = (v: O.IValueInfoProto): ValueSummary => ({ name: v.name ?? '', ...typeName(v.type) });

/** Bytes a tensor's data takes, wherever it is stored. */
function tensorBytes(t: O.ITensorProto): { inline: number; external: number; location?: string } {
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const elems = (t.dims ?? []).reduce<number>((a, d) => a * num(d as Int64), 1);
    const fallback = elems * elementBytesOrZero(t.dataType ?? 0);
    const length = kv.has('length') ? Number(kv.get('length')) : fallback;
    return { inline: 0, external: length, location: kv.get('location') };
  }
  const inline = (t.rawData?.length ?? 0)
    + 4 * ((t.floatData?.length ?? 0) + (t.int32Data?.length ?? 0))
    + 8 * ((t.int64Data?.length ?? 0) + (t.doubleData?.length ?? 0) + (t.uint64Data?.length ?? 0))
    + (t.stringData ?? []).reduce((a, s) => a + s.length, 0);
  return { inline, external: 0 };
}

/** Every node, including those of subgraph attributes. */
function* allNodes(g: O.IGraphProto): Generator<O.INodeProto> {
  for (const n of g.node ?? []) {
    yield n;
    for (const a of n.attribute ?? []) {
      if (a.g) yield* allNodes(a.g);
      for (const sub of a.graphs ?? []) yield* allNodes(sub);
    }
  }
}

async function inspectOnnxFile(file: string): Promise<GraphInspection> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  let model: O.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new UserError(`${file}: not a valid ONNX model (${(err as Error).message})`);
  }
  const g = model.graph;
  if (!g) throw new UserError(`${file}: ONNX model has no graph`);
  const ops = new Map<string, number>();
  let nodes = 0;
  for (const n of allNodes(g)) {
    const op = n.domain ? `${n.domain}.${n.opType}` : (n.opType ?? '?');
    ops.set(op, (ops.get(op) ?? 0) + 1);
    nodes += 1;
  }
  let inlineBytes = 0;
  let externalBytes = 0;
  const ext = new Map<string, { tensors: number; bytes: number }>();
  for (const t of g.initializer ?? []) {
    const b = tensorBytes(t);
    inlineBytes += b.inline;
    externalBytes += b.external;
    if (b.location !== undefined) {
      const e = ext.get(b.location) ?? { tensors: 0, bytes: 0 };
      e.tensors += 1;
      e.bytes += b.external;
      ext.set(b.location, e);
    }
  }
  const externalData = await Promise.all([...ext.keys()].sort().map(async (loc) => ({
    file: loc, ...ext.get(loc)!,
    exists: await stat(join(dirname(file), loc)).then((s) => s.isFile(), () => false),
  })));
  return {
    file: basename(file),
    bytes: bytes.length,
    irVersion: num(model.irVersion as Int64),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    opsets: (model.opsetImport ?? []).map((o) => `${o.domain || 'ai.onnx'}:${num(o.version as Int64)}`),
    inputs: (g.input ?? []).map(valueSummary),
    outputs: (g.output ?? []).map(valueSummary),
    nodes,
    ops: sortedRecord(ops),
    initializers: { count: g.initializer?.length ?? 0, bytes: inlineBytes + externalBytes, inlineBytes, externalBytes },
    externalData,
  };
}

async function inspectModelDir(dir: string, configText: string): Promise<ModelDirInspection> {
  const configProblems: string[] = [];
  try {
    const res = OutputConfigSchema.safeParse(JSON.parse(configText));
    if (!res.success) configProblems.push(`config.json: ${describeZodError(res.error)}`);
  } catch (err) {
    configProblems.push(`config.json: not valid JSON (${(err as Error).message})`);
  }
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name).sort();
  const files = await Promise.all(entries.map(async (name) => ({ name, bytes: (await stat(join(dir, name))).size })));
  const graphs: GraphInspection[] = [];
  for (const name of entries.filter((n) => n.endsWith('.onnx'))) graphs.push(await inspectOnnxFile(join(dir, name)));
  const modelKind = await modelDirKind(dir).catch(() => 'asr' as const);
  return { kind: 'model', path: dir, layout: await detectLayout(dir).catch(() => 'split' as const), modelKind, configProblems, files, graphs };
}

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** Decides what PATH is and inspects it. */
export async function inspectPath(path: string): Promise<Inspection> {
  const abs = resolve(path);
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    throw fsError('cannot inspect', abs, err);
  }
  if (st.isFile()) {
    if (abs.endsWith('.onnx')) return { kind: 'onnx', path: abs, graphs: [await inspectOnnxFile(abs)] };
    if (abs.endsWith('.safetensors')) return inspectSafetensorsFile(abs);
    throw new UserError(`${abs}: expected a .onnx or .safetensors file, or a directory`);
  }
  const configPath = join(abs, CONFIG_FILE);
  const configText = await readFile(configPath, 'utf8').catch(() => undefined);
  if (configText !== undefined && /"encoder"\s*:/.test(configText)) {
    const hasOnnx = (await readdir(abs)).some((n) => n.endsWith('.onnx'));
    if (hasOnnx) return inspectModelDir(abs, configText);
  }
  if (await exists(join(abs, SINGLE_FILE)) || await exists(join(abs, INDEX_FILE))) return inspectCheckpoint(abs);
  throw new UserError(
    `${abs}: neither a checkpoint (config.json + ${SINGLE_FILE} or ${INDEX_FILE}) nor a model directory (config.json with "encoder" + *.onnx)`);
}

// ---------- human text ----------

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
const hist = (r: Record<string, number>) => Object.entries(r).map(([k, v]) => `${k} ${v}`).join(', ');

function tensorLines(t: TensorSummary): string[] {
  return [
    `tensors: ${t.count} (${hist(t.dtypes)}), ${t.parameters.toLocaleString('en-US')} parameters, ${mb(t.bytes)}`,
    `files: ${t.files.join(', ')}`,
  ];
}

function graphLines(g: GraphInspection): string[] {
  const v = (x: ValueSummary) => `    ${x.name}: ${x.type} [${x.dims.join(', ')}]`;
  const lines = [
    `${g.file} (${mb(g.bytes)}, IR ${g.irVersion}, ${g.opsets.join(' ')}${g.producer ? `, ${g.producer}` : ''})`,
    '  inputs:', ...g.inputs.map(v),
    '  outputs:', ...g.outputs.map(v),
    `  nodes: ${g.nodes} (${hist(g.ops)})`,
    `  initializers: ${g.initializers.count}, ${mb(g.initializers.bytes)} (inline ${mb(g.initializers.inlineBytes)}, external ${mb(g.initializers.externalBytes)})`,
  ];
  for (const e of g.externalData) {
    lines.push(`  external data: ${e.file}: ${e.tensors} tensors, ${mb(e.bytes)}${e.exists ? '' : ' (MISSING)'}`);
  }
  return lines;
}

export function formatInspection(r: Inspection): string {
  switch (r.kind) {
    case 'checkpoint': {
      const a = r.config.audio;
      const t = r.config.text;
      const val = r.validation;
      return [
        `checkpoint ${r.path} (${r.format === 'hf' ? 'transformers-native -hf layout' : 'original layout'})`,
        `audio: ${a.layers} layers, d_model ${a.dModel}, ${a.heads} heads, ffn ${a.ffnDim}, output ${a.outputDim}, conv ${a.downsampleHidden}, mel ${a.numMelBins}`,
        `text: ${t.layers} layers, hidden ${t.hidden}, ${t.heads} heads / ${t.kvHeads} kv x ${t.headDim}, intermediate ${t.intermediate}, vocab ${t.vocab}, ${t.tied ? 'tied' : 'untied'} lm_head`,
        ...(r.config.aligner ? [`forced aligner: ${r.config.aligner.classifyNum}-class timestamp head (${r.config.aligner.segmentMs} ms per class) at <timestamp> id ${r.config.aligner.timestampTokenId}`] : []),
        ...tensorLines(r.tensors),
        val.ok
          ? `validation: ok (${val.matched}/${val.expected} tensors${val.ignoredTiedLmHead ? ', tied lm_head present and ignored' : ''})`
          : `validation: FAILED (${val.problems.length} problems)`,
        ...val.problems.map((p) => `  ${p}`),
        ...(val.extras.length ? [`unused tensors (${val.extras.length}):`, ...val.extras.map((e) => `  ${e}`)] : []),
      ].join('\n');
    }
    case 'safetensors':
      return [`safetensors ${r.path}`, ...tensorLines(r.tensors)].join('\n');
    case 'onnx':
      return r.graphs.flatMap(graphLines).join('\n');
    case 'model':
      return [
        `model directory ${r.path} (${r.modelKind === 'forced_aligner' ? 'forced aligner' : `${r.layout} layout`})`,
        r.configProblems.length ? `config.json: ${r.configProblems.join('; ')}` : 'config.json: ok',
        'files:', ...r.files.map((f) => `  ${f.name} ${mb(f.bytes)}`),
        ...r.graphs.flatMap(graphLines),
      ].join('\n');
  }
}

/** Problems that make `inspect` exit non-zero (after printing its report). */
function failureOf(r: Inspection): string | undefined {
  if (r.kind === 'checkpoint' && !r.validation.ok) {
    return `${r.path}: ${r.validation.problems[0]}${r.validation.problems.length > 1 ? ` (and ${r.validation.problems.length - 1} more problems)` : ''}`;
  }
  if (r.kind === 'model' && r.configProblems.length) return `${r.path}: ${r.configProblems[0]}`;
  const graphs = r.kind === 'onnx' || r.kind === 'model' ? r.graphs : [];
  for (const g of graphs) {
    const missing = g.externalData.find((e) => !e.exists);
    if (missing) return `${g.file}: external data file ${missing.file} is missing`;
  }
  return undefined;
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show what a checkpoint directory, .safetensors file, .onnx graph or model directory holds')
    .argument('<path>', 'checkpoint dir, model dir, .onnx or .safetensors file')
    .option('--json', 'machine-readable output on stdout')
    .action(async (path: string, opts: CommonOptions) => {
      const result = await inspectPath(path);
      emitResult(opts, result, () => formatInspection(result));
      const failure = failureOf(result);
      if (failure) throw new UserError(failure);
    });
}
