import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import { bf16BytesToF32, f16BytesToF32 } from '../common/float16.js';
import { parseJsonWith } from './config.js';
import type { SafetensorsDtype, TensorInfo, TensorSource } from './tensor-source.js';

/**
 * Streaming safetensors reader. A file is
 *   [u64 little-endian header length N][N bytes JSON header][data area]
 * and every header entry names dtype, shape and [start, end) offsets into the data area.
 * Only the header is read up front; tensor bytes are read on demand with positioned reads.
 */

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** Headers beyond this are certainly not a model header (a guard against garbage lengths). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Elements converted per read when turning 16-bit floats into float32 (bounds scratch memory). */
const CONVERT_CHUNK_ELEMENTS = 4 * 1024 * 1024;

export const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4,
  U64: 8, I64: 8, F64: 8,
};

export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['BF16', 'F16', 'F32'];

const isDtype = (d: unknown): d is SafetensorsDtype =>
  typeof d === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, d);

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

export const elementCount = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Reads exactly `length` bytes at `position` into `into` (positioned reads may return short). */
async function readExactly(fh: FileHandle, file: string, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(into, done, into.byteLength - done, position + done));
    } catch (err) {
      throw fsError('cannot read', file, err);
    }
    if (bytesRead === 0) throw new UserError(`${file}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Parses and checks a header; returns the tensors (file offsets made absolute). */
export function parseSafetensorsHeader(
  file: string, headerText: string, headerLength: number, fileSize: number,
): TensorInfo[] {
  let raw: unknown;
  try {
    raw = JSON.parse(headerText);
  } catch (err) {
    throw new UserError(`${file}: safetensors header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UserError(`${file}: safetensors header is not a JSON object`);
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const ok = typeof entry === 'object' && entry !== null && !Array.isArray(entry)
        && Object.values(entry).every((v) => typeof v === 'string');
      if (!ok) throw new UserError(`${file}: __metadata__ must be an object of strings`);
      continue;
    }
    const where = `${file}: tensor ${name}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new UserError(`${where}: header entry is not an object`);
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (dtype === undefined) throw new UserError(`${where}: missing dtype`);
    if (shape === undefined) throw new UserError(`${where}: missing shape`);
    if (offsets === undefined) throw new UserError(`${where}: missing data_offsets`);
    if (!isDtype(dtype)) throw new UserError(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new UserError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw new UserError(`${where}: data_offsets must be [start, end] with 0 <= start <= end, got ${JSON.stringify(offsets)}`);
    }
    const [start, end] = offsets as [number, number];
    const expectedBytes = elementCount(shape) * DTYPE_BYTES[dtype];
    if (end - start !== expectedBytes) {
      throw new UserError(
        `${where}: shape [${shape.join(',')}] x ${dtype} needs ${expectedBytes} bytes but data_offsets span ${end - start}`);
    }
    if (end > dataSize) {
      throw new UserError(`${where}: data_offsets [${start},${end}] run past the data area (${dataSize} bytes)`);
    }
    tensors.push({ name, dtype, shape: [...shape], file, offset: dataStart + start, byteLength: end - start });
  }
  // Non-overlap: sorted by start, each tensor must begin at or after the previous one ends.
  const byStart = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byStart.length; i += 1) {
    const prev = byStart[i - 1];
    const cur = byStart[i];
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new UserError(`${file}: tensors ${prev.name} and ${cur.name} overlap`);
    }
  }
  return tensors;
}

interface OpenFile { path: string; handle: FileHandle; tensors: TensorInfo[] }

/** Opens one .safetensors file and reads and checks its header. The handle stays open. */
async function openFile(path: string): Promise<OpenFile> {
  const file = resolve(path);
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw fsError('cannot open', file, err);
  }
  try {
    const { size } = await handle.stat();
    if (size < 8) throw new UserError(`${file}: too small to be a safetensors file (${size} bytes)`);
    const lenBytes = new Uint8Array(8);
    await readExactly(handle, file, lenBytes, 0);
    const len64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (len64 === 0n || len64 > BigInt(MAX_HEADER_BYTES) || len64 > BigInt(size - 8)) {
      throw new UserError(
        `${file}: safetensors header length ${len64} is not sane (file is ${size} bytes, limit ${MAX_HEADER_BYTES})`);
    }
    const headerLength = Number(len64);
    const headerBytes = new Uint8Array(headerLength);
    await readExactly(handle, file, headerBytes, 8);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(headerBytes);
    const tensors = parseSafetensorsHeader(file, text, headerLength, size);
    return { path: file, handle, tensors };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

/** A TensorSource over one or more open safetensors files. */
export class SafetensorsSource implements TensorSource {
  private readonly byName = new Map<string, TensorInfo>();
  private readonly handles = new Map<string, FileHandle>();
  private readonly sorted: TensorInfo[];
  private closed = false;

  constructor(private readonly where: string, files: OpenFile[]) {
    for (const f of files) {
      this.handles.set(f.path, f.handle);
      for (const t of f.tensors) {
        const other = this.byName.get(t.name);
        if (other) throw new UserError(`${where}: tensor ${t.name} appears in both ${other.file} and ${t.file}`);
        this.byName.set(t.name, t);
      }
    }
    this.sorted = [...this.byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  list(): TensorInfo[] {
    return this.sorted.map((t) => ({ ...t, shape: [...t.shape] }));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new UserError(`${this.where}: tensor ${name} not found`);
    return { ...t, shape: [...t.shape] };
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(t.byteLength);
    await readExactly(this.handle(t), t.file, out, t.offset);
    return out;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return this.readFloatRange(t, 0, elementCount(t.shape));
  }

  async readFloat32Rows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> {
    const t = this.info(name);
    const rows = t.shape.length ? t.shape[0] : 1;
    if (!Number.isInteger(rowStart) || !Number.isInteger(rowCount) || rowStart < 0 || rowCount < 0
      || rowStart + rowCount > rows) {
      throw new UserError(`${t.file}: tensor ${name}: rows ${rowStart}..${rowStart + rowCount - 1} outside 0..${rows - 1}`);
    }
    const rowElems = elementCount(t.shape.slice(1));
    return this.readFloatRange(t, rowStart * rowElems, rowCount * rowElems);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map((h) => h.close()));
  }

  private handle(t: TensorInfo): FileHandle {
    const h = this.handles.get(t.file);
    if (!h) throw new UserError(`${t.file}: read after the checkpoint was closed (tensor ${t.name})`);
    return h;
  }

  /** Reads `count` elements starting at element `first` as float32. */
  private async readFloatRange(t: TensorInfo, first: number, count: number): Promise<Float32Array> {
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new UserError(`${t.file}: tensor ${t.name} has dtype ${t.dtype}, expected one of ${FLOAT_DTYPES.join('/')}`);
    }
    const fh = this.handle(t);
    const width = DTYPE_BYTES[t.dtype];
    const out = new Float32Array(count);
    const start = t.offset + first * width;
    if (t.dtype === 'F32') {
      // Little-endian host (x86/ARM): the stored bytes are the float32 values.
      await readExactly(fh, t.file, new Uint8Array(out.buffer), start);
    } else {
      const convert = t.dtype === 'BF16' ? bf16BytesToF32 : f16BytesToF32;
      const scratch = new Uint8Array(Math.min(count, CONVERT_CHUNK_ELEMENTS) * 2);
      for (let done = 0; done < count; done += CONVERT_CHUNK_ELEMENTS) {
        const n = Math.min(CONVERT_CHUNK_ELEMENTS, count - done);
        const bytes = scratch.subarray(0, n * 2);
        await readExactly(fh, t.file, bytes, start + done * 2);
        convert(bytes, out.subarray(done, done + n));
      }
    }
    assertFinite(t, out, first);
    return out;
  }
}

/**
 * Every value read is checked here, in the one pass that reads it: a NaN or infinite weight
 * would export (and quantize) into a model that prints garbage, so it is refused by name.
 */
function assertFinite(t: TensorInfo, values: Float32Array, firstElement: number): void {
  for (let i = 0; i < values.length; i += 1) {
    const v = values[i];
    // v - v is 0 for every finite v, NaN for NaN and +-Infinity.
    if (v - v !== 0) {
      throw new UserError(`${t.file}: tensor ${t.name}: element ${firstElement + i} is ${v} (weights must be finite numbers)`);
    }
  }
}

/** Opens a single .safetensors file. */
export async function openSafetensorsFile(path: string): Promise<TensorSource> {
  const f = await openFile(path);
  return new SafetensorsSource(f.path, [f]);
}

const IndexSchema = z.looseObject({
  metadata: z.looseObject({}).nullish(),
  weight_map: z.record(z.string(), z.string().min(1)),
});

/** Reads `model.safetensors.index.json`, opens every shard it names, checks the map. */
async function openSharded(dir: string, indexPath: string): Promise<TensorSource> {
  let text: string;
  try {
    text = await readFile(indexPath, 'utf8');
  } catch (err) {
    throw fsError('cannot read', indexPath, err);
  }
  const index = parseJsonWith(IndexSchema, text, indexPath);
  const shardNames = [...new Set(Object.values(index.weight_map))].sort();
  if (shardNames.length === 0) throw new UserError(`${indexPath}: weight_map is empty`);
  for (const s of shardNames) {
    if (isAbsolute(s) || s.split(/[\\/]/).includes('..')) {
      throw new UserError(`${indexPath}: shard name ${JSON.stringify(s)} must be a file inside ${dir}`);
    }
  }
  const opened: OpenFile[] = [];
  try {
    for (const s of shardNames) {
      const p = join(dir, s);
      if (!(await exists(p))) throw new UserError(`${indexPath}: shard ${s} named in weight_map does not exist`);
      opened.push(await openFile(p));
    }
    const byShard = new Map(opened.map((f, i) => [shardNames[i], new Set(f.tensors.map((t) => t.name))]));
    for (const name of Object.keys(index.weight_map).sort()) {
      const shard = index.weight_map[name];
      if (!byShard.get(shard)?.has(name)) {
        throw new UserError(`${indexPath}: tensor ${name} is mapped to ${shard} but that shard does not contain it`);
      }
    }
    return new SafetensorsSource(indexPath, opened);
  } catch (err) {
    await Promise.all(opened.map((f) => f.handle.close().catch(() => undefined)));
    throw err;
  }
}

const exists = async (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/**
 * Opens a checkpoint directory's weights: `model.safetensors.index.json` + shards when the
 * index exists, otherwise `model.safetensors`.
 */
export async function openSafetensors(dir: string): Promise<TensorSource> {
  const root = resolve(dir);
  const indexPath = join(root, INDEX_FILE);
  if (await exists(indexPath)) return openSharded(root, indexPath);
  const single = join(root, SINGLE_FILE);
  if (await exists(single)) return openSafetensorsFile(single);
  throw new UserError(`${root}: no ${SINGLE_FILE} or ${INDEX_FILE} (is this a Hugging Face checkpoint directory?)`);
}

/** For messages: the file name a tensor lives in, without the directory. */
export const shardOf = (t: TensorInfo): string => basename(t.file);
