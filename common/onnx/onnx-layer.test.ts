import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ExternalDataWriter, PAGE_ALIGN_FROM, PAGE_BYTES, DataType, markExternal, readRange, removeDeadNodes,
  removeUnusedInitializers, streamRange, tensorAlignment, tensorBytes, uniqueName,
  type Graph, type Node, type Tensor,
} from './index.js';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'qwen3-onnx-layer-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('ExternalDataWriter', () => {
  it('starts tensors of 64 KiB or more on a page and smaller ones on 64 bytes', async () => {
    const path = join(dir, 'a.data');
    const w = await ExternalDataWriter.create(path);
    const small = await w.writeTensor(bytes(10, 1));
    const small2 = await w.writeTensor(bytes(100, 2));
    const large = await w.writeTensor(bytes(PAGE_ALIGN_FROM, 3));
    const small3 = await w.writeTensor(bytes(3, 4));
    await w.commit();
    expect([small.offset, small2.offset, large.offset, small3.offset]).toEqual([0, 64, PAGE_BYTES, PAGE_BYTES + PAGE_ALIGN_FROM]);
    const file = new Uint8Array(await readFile(path));
    expect(file.byteLength).toBe(PAGE_BYTES + PAGE_ALIGN_FROM + 3);
    expect(file.subarray(large.offset, large.offset + large.length)).toEqual(bytes(PAGE_ALIGN_FROM, 3));
    expect(file.subarray(10, 64).every((b) => b === 0)).toBe(true);
    expect(w.location).toBe('a.data');
  });

  it('with pageAlignFrom 0 puts every tensor on a page (the export layout)', async () => {
    const w = await ExternalDataWriter.create(join(dir, 'b.data'), { pageAlignFrom: 0 });
    const offsets = [];
    for (const n of [1, 5000, 7]) offsets.push((await w.writeTensor(bytes(n, n))).offset);
    await w.abort();
    expect(offsets).toEqual([0, PAGE_BYTES, 3 * PAGE_BYTES]);
    expect(tensorAlignment(1, 0)).toBe(PAGE_BYTES);
    expect(tensorAlignment(PAGE_ALIGN_FROM - 1)).toBe(64);
  });

  it('refuses a tensor that got other than its announced bytes, and copies file ranges exactly', async () => {
    const src = join(dir, 'src.bin');
    await writeFile(src, bytes(3000, 9));
    const w = await ExternalDataWriter.create(join(dir, 'c.data'));
    const p = await w.begin(8);
    await w.write(bytes(7, 0));
    expect(() => w.end(p, 'tensor x')).toThrow(/tensor x: wrote 7 bytes, expected 8/);
    const copied = await w.copyRange(src, 100, 2000);
    await w.commit();
    expect(copied.offset % 64).toBe(0);
    expect(new Uint8Array(await readFile(join(dir, 'c.data'))).subarray(copied.offset)).toEqual(bytes(3000, 9).subarray(100, 2100));
  });
});

describe('byte ranges and external tensors', () => {
  it('reads, streams and refuses ranges past the end of the file by name', async () => {
    const src = join(dir, 'r.bin');
    await writeFile(src, bytes(50, 5));
    expect(await readRange(src, 10, new Uint8Array(5))).toEqual(bytes(50, 5).subarray(10, 15));
    const chunks: number[] = [];
    await streamRange(src, 0, 50, (c) => { chunks.push(...c); }, { copy: false });
    expect(Uint8Array.from(chunks)).toEqual(bytes(50, 5));
    await expect(readRange(src, 45, new Uint8Array(10))).rejects.toThrow(/r\.bin: unexpected end of file at byte 50/);
  });

  it('markExternal points a tensor at its placement and drops its inline data', () => {
    const t: Tensor = { name: 'w', dataType: DataType.FLOAT, dims: [2, 2], rawData: new Uint8Array(16), floatData: [1, 2] };
    markExternal(t, 'w.data', { offset: 4096, length: 16 });
    expect(t.rawData).toBeUndefined();
    expect(t.floatData).toEqual([]);
    expect(tensorBytes(t, join(dir, 'm.onnx'))).toEqual({ kind: 'external', file: join(dir, 'w.data'), offset: 4096, length: 16 });
    expect(() => tensorBytes(markExternal({ ...t, dims: [3] }, 'w.data', { offset: 0, length: 16 }), 'm.onnx')).toThrow(/does not match dims/);
  });
});

const node = (opType: string, input: string[], output: string[], domain = ''): Node =>
  ({ name: `${opType}_${output.join('_')}`, opType, domain, input, output, attribute: [] });

describe('clean-up passes', () => {
  it('removes dead ONNX nodes (whole chains), keeps live ones and other domains', () => {
    const graph: Graph = {
      node: [
        node('Transpose', ['w'], ['wt']),
        node('Cast', ['wt'], ['wc']),              // dead chain: Cast <- Transpose
        node('Relu', ['x'], ['y']),                // feeds the output
        node('Custom', ['x'], ['z'], 'com.example'), // unknown domain: kept
      ],
      initializer: [{ name: 'w', dataType: DataType.FLOAT, dims: [2] }, { name: 'unused', dataType: DataType.FLOAT, dims: [1] }],
      input: [{ name: 'x' }, { name: 'unused' }],
      output: [{ name: 'y' }],
      valueInfo: [],
    };
    expect(removeDeadNodes(graph)).toBe(2);
    expect(graph.node.map((n) => n.opType)).toEqual(['Relu', 'Custom']);
    expect(removeUnusedInitializers(graph)).toBe(2);
    expect(graph.initializer).toEqual([]);
    expect(graph.input.map((i) => i.name)).toEqual(['x']);
  });

  it('uniqueName appends _1, _2... and records what it hands out', () => {
    const used = new Set(['a', 'a_1']);
    expect([uniqueName(used, 'a'), uniqueName(used, 'a'), uniqueName(used, 'b')]).toEqual(['a_2', 'a_3', 'b']);
    expect(used.has('a_3')).toBe(true);
  });
});
