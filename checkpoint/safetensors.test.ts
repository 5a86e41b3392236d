import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../common/float16.js';
import { openSafetensors, openSafetensorsFile } from './safetensors.js';
import {
  encodeFloats, floatTensor, layoutTensors, safetensorsBytes, writeSafetensors,
} from './test-writer.js';

let root: string;
let counter = 0;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'q3o-st-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

async function freshDir(): Promise<string> {
  const d = join(root, `d${counter++}`);
  await mkdir(d);
  return d;
}

async function writeBytes(bytes: Uint8Array): Promise<string> {
  const p = join(await freshDir(), 'model.safetensors');
  await writeFile(p, bytes);
  return p;
}

/** Expects opening `path` to fail with a one-line UserError matching every pattern. */
async function expectOpenError(path: string, ...patterns: RegExp[]): Promise<void> {
  const err = await openSafetensorsFile(path).then(
    (s) => { void s.close(); return undefined; },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  expect(msg).toContain(path);
  for (const p of patterns) expect(msg).toMatch(p);
}

const goodTensors = () => [
  floatTensor('a.weight', [3, 4], 'BF16'),
  floatTensor('b.bias', [5], 'F32'),
];

describe('safetensors reading', () => {
  it('round-trips BF16, F16 and F32 values exactly as their formats allow', async () => {
    const values = [0, -0, 1, -1.5, 3.140625, 65504, 1e-3, -2.5e-5, 1e20, -7.75, 0.1, 123.456];
    // 1e20 overflows float16 to Infinity, which the reader refuses (see the finite-values test).
    const f16Values = values.map((v) => (v === 1e20 ? 6e4 : v));
    const d = await freshDir();
    await writeSafetensors(join(d, 'model.safetensors'), [
      { name: 'bf', dtype: 'BF16', shape: [3, 4], data: encodeFloats('BF16', values) },
      { name: 'f16', dtype: 'F16', shape: [12], data: encodeFloats('F16', f16Values) },
      { name: 'f32', dtype: 'F32', shape: [2, 2, 3], data: encodeFloats('F32', values) },
    ], { format: 'pt' });
    const src = await openSafetensors(d);
    try {
      expect(Array.from(await src.readFloat32('bf'))).toEqual(values.map((v) => bf16ToF32(f32ToBf16(v))));
      expect(Array.from(await src.readFloat32('f16'))).toEqual(f16Values.map((v) => f16ToF32(f32ToF16(v))));
      expect(Array.from(await src.readFloat32('f32'))).toEqual(Array.from(Float32Array.from(values)));
      expect(await src.readRaw('bf')).toEqual(encodeFloats('BF16', values));
      expect(src.list().map((t) => t.name)).toEqual(['bf', 'f16', 'f32']);
      expect(src.info('f32')).toMatchObject({ dtype: 'F32', shape: [2, 2, 3], byteLength: 48 });
      expect(src.has('bf')).toBe(true);
      expect(src.has('nope')).toBe(false);
      expect(() => src.info('nope')).toThrow(/tensor nope not found/);
    } finally {
      await src.close();
    }
  });

  it('refuses NaN and infinite values in every float dtype, naming the tensor and element, in whole and row reads', async () => {
    const d = await freshDir();
    const le16 = (...h: number[]) => new Uint8Array(h.flatMap((x) => [x & 0xff, x >>> 8]));
    await writeSafetensors(join(d, 'model.safetensors'), [
      { name: 'bf_nan', dtype: 'BF16', shape: [2, 2], data: le16(0x3f80, 0x3f80, 0x3f80, 0x7fc0) }, // NaN last
      { name: 'f16_inf', dtype: 'F16', shape: [3], data: le16(0x3c00, 0xfc00, 0x3c00) }, // -Infinity at 1
      { name: 'f32_inf', dtype: 'F32', shape: [2], data: encodeFloats('F32', [Infinity, 1]) },
      { name: 'fine', dtype: 'F32', shape: [2], data: encodeFloats('F32', [1, -3.4e38]) },
    ]);
    const src = await openSafetensors(d);
    try {
      await expect(src.readFloat32('bf_nan')).rejects.toThrow(/tensor bf_nan: element 3 is NaN \(weights must be finite numbers\)$/);
      await expect(src.readFloat32Rows('bf_nan', 1, 1)).rejects.toThrow(/tensor bf_nan: element 3 is NaN/);
      expect(Array.from(await src.readFloat32Rows('bf_nan', 0, 1))).toEqual([1, 1]);
      await expect(src.readFloat32('f16_inf')).rejects.toThrow(/tensor f16_inf: element 1 is -Infinity/);
      await expect(src.readFloat32('f32_inf')).rejects.toThrow(/model\.safetensors: tensor f32_inf: element 0 is Infinity/);
      expect(Array.from(await src.readFloat32('fine'))).toEqual([1, Math.fround(-3.4e38)]);
    } finally {
      await src.close();
    }
  });

  it('decodes hand-written bit patterns (independent of the float16 helpers)', async () => {
    const d = await freshDir();
    // bf16 0x3F80 = 1, 0xC040 = -3; f16 0x3C00 = 1, 0xC200 = -3, 0x0001 = 2^-24; f32 0x3F800000 = 1.
    const le16 = (...h: number[]) => new Uint8Array(h.flatMap((x) => [x & 0xff, x >>> 8]));
    await writeSafetensors(join(d, 'model.safetensors'), [
      { name: 'bf', dtype: 'BF16', shape: [2], data: le16(0x3f80, 0xc040) },
      { name: 'h', dtype: 'F16', shape: [3], data: le16(0x3c00, 0xc200, 0x0001) },
      { name: 'f', dtype: 'F32', shape: [1], data: new Uint8Array([0, 0, 0x80, 0x3f]) },
    ]);
    const src = await openSafetensors(d);
    try {
      expect(Array.from(await src.readFloat32('bf'))).toEqual([1, -3]);
      expect(Array.from(await src.readFloat32('h'))).toEqual([1, -3, 2 ** -24]);
      expect(Array.from(await src.readFloat32('f'))).toEqual([1]);
    } finally {
      await src.close();
    }
  });

  it('reads row ranges of a tensor without reading the rest', async () => {
    const d = await freshDir();
    await writeSafetensors(join(d, 'model.safetensors'), [
      floatTensor('emb', [10, 3], 'BF16', (i) => i),
      floatTensor('emb16', [10, 3], 'F16', (i) => -i),
      floatTensor('emb32', [10, 3], 'F32', (i) => i / 2),
    ]);
    const src = await openSafetensors(d);
    try {
      expect(Array.from(await src.readFloat32Rows('emb', 2, 3))).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 14]);
      expect(Array.from(await src.readFloat32Rows('emb16', 9, 1))).toEqual([-27, -28, -29]);
      expect(Array.from(await src.readFloat32Rows('emb32', 0, 1))).toEqual([0, 0.5, 1]);
      expect((await src.readFloat32Rows('emb', 10, 0)).length).toBe(0);
      await expect(src.readFloat32Rows('emb', 8, 3)).rejects.toThrow(/tensor emb: rows 8\.\.10 outside 0\.\.9/);
    } finally {
      await src.close();
    }
  });

  it('converts in chunks larger tensors correctly (more than one conversion chunk)', async () => {
    const d = await freshDir();
    const n = 4 * 1024 * 1024 + 17;
    await writeSafetensors(join(d, 'model.safetensors'), [floatTensor('big', [n], 'BF16', (i) => i % 251)]);
    const src = await openSafetensors(d);
    try {
      const v = await src.readFloat32('big');
      expect(v.length).toBe(n);
      expect(v[n - 1]).toBe((n - 1) % 251);
      expect(v[4 * 1024 * 1024]).toBe((4 * 1024 * 1024) % 251);
    } finally {
      await src.close();
    }
  });

  it('refuses readFloat32 on an integer tensor but returns its raw bytes', async () => {
    const d = await freshDir();
    const ids = new Uint8Array(new BigInt64Array([1n, 2n]).buffer);
    await writeSafetensors(join(d, 'model.safetensors'), [{ name: 'ids', dtype: 'I64', shape: [2], data: ids }]);
    const src = await openSafetensors(d);
    try {
      await expect(src.readFloat32('ids')).rejects.toThrow(/tensor ids has dtype I64/);
      expect(await src.readRaw('ids')).toEqual(ids);
    } finally {
      await src.close();
    }
  });

  it('fails reads after close with a clear error', async () => {
    const d = await freshDir();
    await writeSafetensors(join(d, 'model.safetensors'), goodTensors());
    const src = await openSafetensors(d);
    await src.close();
    await expect(src.readRaw('a.weight')).rejects.toThrow(/closed/);
    await src.close();
  });

  it('names the directory when it holds no weights', async () => {
    const d = await freshDir();
    await expect(openSafetensors(d)).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });
});

describe('safetensors header validation', () => {
  const withHeader = (header: unknown, data: Uint8Array = new Uint8Array(0)) => writeBytes(safetensorsBytes(header, data));

  it('rejects a file too small to hold the length', async () => {
    await expectOpenError(await writeBytes(new Uint8Array(5)), /too small/);
  });

  it('rejects a zero header length', async () => {
    await expectOpenError(await writeBytes(new Uint8Array(16)), /header length 0 is not sane/);
  });

  it('rejects a header length beyond the file size', async () => {
    const b = safetensorsBytes({}, new Uint8Array(0));
    new DataView(b.buffer).setBigUint64(0, BigInt(b.length), true);
    await expectOpenError(await writeBytes(b), /header length \d+ is not sane/);
  });

  it('rejects a header length over 100 MB even when the file is that large', async () => {
    const b = new Uint8Array(64);
    new DataView(b.buffer).setBigUint64(0, 150_000_000n, true);
    const p = await writeBytes(b);
    await truncate(p, 200_000_000); // sparse: costs no disk space
    await expectOpenError(p, /header length 150000000 is not sane \(file is 200000000 bytes, limit 104857600\)/);
  });

  it('rejects malformed header JSON', async () => {
    await expectOpenError(await writeBytes(safetensorsBytes(null, new Uint8Array(0), '{"a": ')), /not valid JSON/);
  });

  it('rejects a header that is not an object', async () => {
    await expectOpenError(await withHeader([1, 2]), /not a JSON object/);
  });

  it('accepts string __metadata__ and rejects other kinds', async () => {
    const ok = layoutTensors(goodTensors(), { format: 'pt' });
    const src = await openSafetensorsFile(await withHeader(ok.header, ok.data));
    expect(src.list().length).toBe(2);
    await src.close();
    await expectOpenError(await withHeader({ __metadata__: { n: 3 } }), /__metadata__ must be an object of strings/);
  });

  it.each([
    ['dtype', /tensor x: missing dtype/],
    ['shape', /tensor x: missing shape/],
    ['data_offsets', /tensor x: missing data_offsets/],
  ])('rejects an entry without %s', async (field, pattern) => {
    const entry: Record<string, unknown> = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
    delete entry[field];
    await expectOpenError(await withHeader({ x: entry }, new Uint8Array(4)), pattern);
  });

  it('rejects an entry that is not an object', async () => {
    await expectOpenError(await withHeader({ x: 3 }), /tensor x: header entry is not an object/);
  });

  it('rejects an unknown dtype', async () => {
    await expectOpenError(
      await withHeader({ x: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, new Uint8Array(16)),
      /tensor x: unknown dtype "F128"/);
  });

  it('rejects a malformed shape or offsets', async () => {
    await expectOpenError(
      await withHeader({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /tensor x: shape must be/);
    await expectOpenError(
      await withHeader({ x: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)),
      /tensor x: data_offsets must be/);
  });

  it('rejects a shape whose size does not match the byte length', async () => {
    await expectOpenError(
      await withHeader({ 'w.weight': { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 10] } }, new Uint8Array(10)),
      /tensor w\.weight: shape \[2,3\] x BF16 needs 12 bytes but data_offsets span 10/);
  });

  it('rejects offsets outside the data area', async () => {
    await expectOpenError(
      await withHeader({ x: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(8)),
      /tensor x: data_offsets \[4,12\] run past the data area \(8 bytes\)/);
  });

  it('rejects overlapping tensors', async () => {
    await expectOpenError(await withHeader({
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    }, new Uint8Array(12)), /tensors a and b overlap/);
  });
});

describe('sharded checkpoints', () => {
  async function writeShards(
    weightMap: Record<string, string> | string, shards: Record<string, ReturnType<typeof floatTensor>[]>,
  ): Promise<string> {
    const d = await freshDir();
    for (const [file, tensors] of Object.entries(shards)) await writeSafetensors(join(d, file), tensors);
    const text = typeof weightMap === 'string' ? weightMap
      : JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
    await writeFile(join(d, 'model.safetensors.index.json'), text);
    return d;
  }
  const s1 = 'model-00001-of-00002.safetensors';
  const s2 = 'model-00002-of-00002.safetensors';

  it('reads tensors across shards as one source', async () => {
    const d = await writeShards({ 'a.w': s1, 'b.w': s2, 'c.w': s2 }, {
      [s1]: [floatTensor('a.w', [2, 2], 'BF16', (i) => i)],
      [s2]: [floatTensor('c.w', [3], 'F32', (i) => -i), floatTensor('b.w', [1], 'F16', () => 0.5)],
    });
    const src = await openSafetensors(d);
    try {
      expect(src.list().map((t) => t.name)).toEqual(['a.w', 'b.w', 'c.w']);
      expect(src.info('a.w').file).toBe(join(d, s1));
      expect(src.info('c.w').file).toBe(join(d, s2));
      expect(Array.from(await src.readFloat32('a.w'))).toEqual([0, 1, 2, 3]);
      expect(Array.from(await src.readFloat32('b.w'))).toEqual([0.5]);
      expect(Array.from(await src.readFloat32('c.w'))).toEqual([-0, -1, -2]);
    } finally {
      await src.close();
    }
  });

  it('prefers the index over a stray model.safetensors', async () => {
    const d = await writeShards({ 'a.w': s1 }, { [s1]: [floatTensor('a.w', [1])], 'model.safetensors': [floatTensor('z', [1])] });
    const src = await openSafetensors(d);
    expect(src.has('a.w')).toBe(true);
    expect(src.has('z')).toBe(false);
    await src.close();
  });

  it('rejects malformed index JSON', async () => {
    const d = await writeShards('{"weight_map": ', { [s1]: [floatTensor('a.w', [1])] });
    await expect(openSafetensors(d)).rejects.toThrow(/model\.safetensors\.index\.json: not valid JSON/);
  });

  it('rejects an index without a weight_map or with non-string entries', async () => {
    const d = await writeShards('{"metadata": {}}', { [s1]: [floatTensor('a.w', [1])] });
    await expect(openSafetensors(d)).rejects.toThrow(/index\.json: weight_map: /);
    const d2 = await writeShards('{"weight_map": {"a.w": 3}}', { [s1]: [floatTensor('a.w', [1])] });
    await expect(openSafetensors(d2)).rejects.toThrow(/index\.json: weight_map\.a\.w: /);
  });

  it('rejects a shard the index names that does not exist', async () => {
    const d = await writeShards({ 'a.w': s1, 'b.w': s2 }, { [s1]: [floatTensor('a.w', [1])] });
    await expect(openSafetensors(d)).rejects.toThrow(new RegExp(`shard ${s2} named in weight_map does not exist`));
  });

  it('rejects a shard name pointing outside the directory', async () => {
    const d = await writeShards({ 'a.w': '../x.safetensors' }, {});
    await expect(openSafetensors(d)).rejects.toThrow(/shard name "\.\.\/x\.safetensors" must be a file inside/);
  });

  it('rejects a tensor missing from the shard the index names', async () => {
    const d = await writeShards({ 'a.w': s1, 'b.w': s1 }, {
      [s1]: [floatTensor('a.w', [1])], [s2]: [floatTensor('b.w', [1])],
    });
    await expect(openSafetensors(d)).rejects.toThrow(new RegExp(`tensor b\\.w is mapped to ${s1} but that shard does not contain it`));
  });

  it('rejects a tensor name present in two shards', async () => {
    const d = await writeShards({ 'a.w': s1, 'b.w': s2 }, {
      [s1]: [floatTensor('a.w', [1]), floatTensor('b.w', [1])], [s2]: [floatTensor('b.w', [1])],
    });
    await expect(openSafetensors(d)).rejects.toThrow(/tensor b\.w appears in both .*model-00001-of-00002\.safetensors and .*model-00002-of-00002\.safetensors/);
  });

  it('reports header errors of a shard with the shard file name', async () => {
    const d = await writeShards({ 'a.w': s1 }, {});
    await writeFile(join(d, s1), safetensorsBytes([], new Uint8Array(0)));
    await expect(openSafetensors(d)).rejects.toThrow(new RegExp(`${s1}: safetensors header is not a JSON object`));
  });
});
