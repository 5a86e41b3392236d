import { describe, it, expect } from 'vitest';
import { mkdtemp, readFile, writeFile, rm, readdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { silentProgress } from '../common/progress.js';
import { Prng } from '../common/prng.js';
import { parseCompressionLevel, writeTarGz } from './archive-writer.js';
import { readTarGz } from './archive-reader.js';
import { decodeHeader, encodeHeader } from './tar-format.js';
import { sha256 } from '../common/hash.js';

async function sampleFiles(dir: string): Promise<{ name: string; path: string; size: number; bytes: Uint8Array }[]> {
  const rng = new Prng(7);
  const out = [];
  for (const [name, size] of [['b.data', 70_000], ['a.onnx', 513], ['empty.txt', 0], ['c.bin', 512]] as const) {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 1) bytes[i] = rng.nextU32() & 0xff;
    const path = join(dir, name);
    await writeFile(path, bytes);
    out.push({ name, path, size, bytes });
  }
  return out;
}

describe('tar.gz writer', () => {
  it('is byte-reproducible and sorts entries', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(dir);
      const entries = files.map((f) => ({ name: f.name, source: { path: f.path }, size: f.size }));
      const a = join(dir, 'out', 'one.tar.gz');
      const b = join(dir, 'out', 'two.tar.gz');
      await writeTarGz({ outPath: a, topDir: 'top', entries, level: 1, progress: silentProgress });
      await writeTarGz({ outPath: b, topDir: 'top', entries: [...entries].reverse(), level: 1, progress: silentProgress });
      const ba = await readFile(a);
      expect(sha256(ba)).toBe(sha256(await readFile(b)));
      // gzip header carries no timestamp, no name, OS "unknown".
      expect([...ba.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
      // No temp files left beside the output.
      expect((await readdir(join(dir, 'out'))).sort()).toEqual(['one.tar.gz', 'two.tar.gz']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('round-trips through our reader and through system tar', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(dir);
      const out = join(dir, 'x.tar.gz');
      const recorded = await writeTarGz({ outPath: out, topDir: 'pkg', entries: files.map((f) => ({ name: f.name, source: { path: f.path }, size: f.size })), level: 6, progress: silentProgress });
      expect(recorded.size).toBe((await readFile(out)).length);
      expect(recorded.sha256).toBe(sha256(await readFile(out)));
      expect(recorded.files.map((r) => r.name)).toEqual(['a.onnx', 'b.data', 'c.bin', 'empty.txt']);
      for (const r of recorded.files) expect(r.sha256).toBe(sha256(files.find((f) => f.name === r.name)!.bytes));

      const got = new Map<string, Uint8Array[]>();
      const { headers, sha256: readSha } = await readTarGz(out, (h) => {
        if (h.type === 'directory') return null;
        const parts: Uint8Array[] = [];
        got.set(h.name, parts);
        return { data: (c) => { parts.push(Uint8Array.from(c)); }, end: () => {} };
      });
      expect(readSha).toBe(recorded.sha256);
      expect(headers.map((h) => h.name)).toEqual(['pkg', 'pkg/a.onnx', 'pkg/b.data', 'pkg/c.bin', 'pkg/empty.txt']);
      for (const f of files) expect(sha256(Buffer.concat(got.get(`pkg/${f.name}`)!))).toBe(sha256(f.bytes));

      const listing = execFileSync('tar', ['-tvzf', out], { encoding: 'utf8' });
      expect(listing).toContain('pkg/b.data');
      expect(listing).toMatch(/-rw-r--r-- 0\/0\s+70000 2000-01-01/);
      const ex = join(dir, 'ex');
      execFileSync('mkdir', ['-p', ex]);
      execFileSync('tar', ['-xzf', out, '-C', ex]);
      expect(sha256(await readFile(join(ex, 'pkg', 'b.data')))).toBe(sha256(files[0].bytes));
      // The gzip trailer (CRC32 + length) is valid: Node's own gunzip accepts it.
      expect(gunzipSync(await readFile(out)).length % 512).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes valid, reproducible gzip with Huffman-only coding (the default) and rejects bad levels', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(dir);
      const entries = files.map((f) => ({ name: f.name, source: { path: f.path }, size: f.size }));
      const a = await writeTarGz({ outPath: join(dir, 'h1.tar.gz'), topDir: 'h', entries, level: 'huffman', progress: silentProgress });
      const b = await writeTarGz({ outPath: join(dir, 'h2.tar.gz'), topDir: 'h', entries, level: 'huffman', progress: silentProgress });
      expect(a.sha256).toBe(b.sha256);
      const tar = gunzipSync(await readFile(join(dir, 'h1.tar.gz')));
      for (const f of files) if (f.size) expect(tar.includes(Buffer.from(f.bytes.subarray(0, 64)))).toBe(true);
      expect(parseCompressionLevel('huffman')).toBe('huffman');
      expect(parseCompressionLevel('9')).toBe(9);
      expect(() => parseCompressionLevel('10')).toThrow(/--level must be huffman or an integer 0-9, got "10"/);
      expect(() => parseCompressionLevel('fast')).toThrow(/--level/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves nothing behind when a source disappears mid-way', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const out = join(dir, 'out', 'bad.tar.gz');
      await expect(writeTarGz({ outPath: out, topDir: 't', entries: [{ name: 'gone', source: { path: join(dir, 'missing') }, size: 10 }], level: 1, progress: silentProgress }))
        .rejects.toThrow(/missing/);
      expect(await readdir(join(dir, 'out'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects a corrupt header and a truncated archive', async () => {
    const h = encodeHeader({ name: 'x/y', size: 5, mode: 0o644, type: 'file', mtime: 0 });
    expect(decodeHeader(h)?.name).toBe('x/y');
    h[0] ^= 1;
    expect(() => decodeHeader(h)).toThrow(/checksum/);
    const big = encodeHeader({ name: 'big', size: 9 * 2 ** 30, mode: 0o644, type: 'file', mtime: 0 });
    expect(decodeHeader(big)?.size).toBe(9 * 2 ** 30);

    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(dir);
      const out = join(dir, 'x.tar.gz');
      await writeTarGz({ outPath: out, topDir: 'pkg', entries: files.map((f) => ({ name: f.name, source: { path: f.path }, size: f.size })), level: 1, progress: silentProgress });
      const bytes = await readFile(out);
      await writeFile(out, bytes.subarray(0, Math.floor(bytes.length / 2)));
      await expect(readTarGz(out, () => null)).rejects.toThrow(/x\.tar\.gz: corrupt archive/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
