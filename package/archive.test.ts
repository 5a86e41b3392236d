import { describe, it, expect } from 'vitest';
import { mkdir, mkdtemp, readFile, writeFile, rm, readdir, symlink } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { silentProgress } from '../common/progress.js';
import { Prng } from '../common/prng.js';
import { parseCompressionLevel, writeTarGz } from './archive-writer.js';
import { readTarGz } from './archive-reader.js';
import { BLOCK, decodeHeader, encodeHeader, paddingFor, parsePaxRecords } from './tar-format.js';
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

/** Every file entry of a .tar.gz as our reader sees it: name -> sha256 of its bytes. */
async function readAll(path: string): Promise<Map<string, string>> {
  const got = new Map<string, string>();
  await readTarGz(path, (h) => {
    if (h.type === 'directory') { got.set(`${h.name}/`, 'dir'); return null; }
    const parts: Uint8Array[] = [];
    return { data: (c) => { parts.push(Uint8Array.from(c)); }, end: () => { got.set(h.name, sha256(Buffer.concat(parts))); } };
  });
  return got;
}

/** A header block of any type flag (for metadata entries our writer never makes). */
function rawHeader(name: string, size: number, typeflag: string): Uint8Array {
  const h = encodeHeader({ name, size, mode: 0o644, type: 'file', mtime: 0 });
  h[156] = typeflag.charCodeAt(0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, '0')}\0 `), 148);
  return h;
}

function paxBody(records: Record<string, string>): Uint8Array {
  let text = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len += 1;
    text += `${len}${rest}`;
  }
  return new TextEncoder().encode(text);
}

function padded(bytes: Uint8Array): Uint8Array[] {
  return [bytes, new Uint8Array(paddingFor(bytes.length))];
}

describe('tar reader: what other tars write', () => {
  it('reads GNU tar --format=pax archives (an x header before every entry) and long names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(join(dir, ''));
      const top = join(dir, 'top');
      await mkdir(top);
      const longName = `${'n'.repeat(150)}.bin`; // no '/' to split at: only PAX (or GNU L) can store it
      const expected = new Map<string, string>([['top/', 'dir']]);
      for (const f of files) { await writeFile(join(top, f.name), f.bytes); expected.set(`top/${f.name}`, sha256(f.bytes)); }
      await writeFile(join(top, longName), files[0].bytes);
      expected.set(`top/${longName}`, sha256(files[0].bytes));
      for (const format of ['pax', 'gnu']) {
        const out = join(dir, `${format}.tar.gz`);
        execFileSync('tar', [`--format=${format}`, '-czf', out, '-C', dir, 'top']);
        if (format === 'pax') expect(gunzipSync(await readFile(out)).includes(Buffer.from('PaxHeaders'))).toBe(true);
        expect(await readAll(out)).toEqual(expected);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('applies PAX path and size records, global headers, and GNU long names', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const body = new TextEncoder().encode('hello pax');
      const realName = `d/${'x'.repeat(120)}`;
      const gnuName = `d/${'g'.repeat(130)}`;
      const pax = paxBody({ path: realName, size: String(body.length), mtime: '1700000000.25' });
      const global = paxBody({ comment: 'abc123' });
      const longName = new TextEncoder().encode(`${gnuName}\0`);
      const tar = Buffer.concat([
        rawHeader('pax_global_header', global.length, 'g'), ...padded(global),
        encodeHeader({ name: 'd', size: 0, mode: 0o755, type: 'directory', mtime: 0 }),
        rawHeader('d/PaxHeaders/short', pax.length, 'x'), ...padded(pax),
        // The ustar size field says 0: only the PAX size makes the body readable.
        encodeHeader({ name: 'd/short', size: 0, mode: 0o644, type: 'file', mtime: 0 }), ...padded(body),
        rawHeader('././@LongLink', longName.length, 'L'), ...padded(longName),
        encodeHeader({ name: 'd/truncated-name', size: body.length, mode: 0o644, type: 'file', mtime: 0 }), ...padded(body),
        new Uint8Array(2 * BLOCK),
      ]);
      const out = join(dir, 'hand.tar.gz');
      await writeFile(out, gzipSync(tar));
      expect(await readAll(out)).toEqual(new Map([['d/', 'dir'], [realName, sha256(body)], [gnuName, sha256(body)]]));
      expect(parsePaxRecords(pax).get('mtime')).toBe('1700000000.25');
      expect(() => parsePaxRecords(new TextEncoder().encode('99 path=x\n'))).toThrow(/malformed PAX/);

      // A PAX record whose length is wrong is corruption, named as such.
      const bad = Buffer.concat([rawHeader('x', 12, 'x'), ...padded(new TextEncoder().encode('5 path=abc\n')), new Uint8Array(2 * BLOCK)]);
      await writeFile(out, gzipSync(bad));
      await expect(readTarGz(out, () => null)).rejects.toThrow(/hand\.tar\.gz: corrupt archive \(malformed PAX extended header record/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses links by name instead of calling them corrupt', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      await mkdir(join(dir, 'top'));
      await writeFile(join(dir, 'top', 'a'), 'a');
      await symlink('a', join(dir, 'top', 'link'));
      const out = join(dir, 'links.tar.gz');
      execFileSync('tar', ['--format=pax', '-czf', out, '-C', dir, 'top']);
      await expect(readTarGz(out, () => null)).rejects.toThrow(/unsupported tar entry top\/link \(symbolic link; model archives hold only files and folders\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes a final entry made from the others\' records, after the sorted ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tar-test-'));
    try {
      const files = await sampleFiles(dir);
      const out = join(dir, 'm.tar.gz');
      const written = await writeTarGz({
        outPath: out, topDir: 't', entries: files.map((f) => ({ name: f.name, source: { path: f.path }, size: f.size })), level: 1, progress: silentProgress,
        finalEntry: { name: 'list.txt', bytes: (records) => new TextEncoder().encode(records.map((r) => `${r.sha256} ${r.name}\n`).join('')) },
      });
      expect(written.files.map((f) => f.name)).toEqual(['a.onnx', 'b.data', 'c.bin', 'empty.txt']);
      const listing = execFileSync('tar', ['-tzf', out], { encoding: 'utf8' }).trim().split('\n');
      expect(listing).toEqual(['t/', 't/a.onnx', 't/b.data', 't/c.bin', 't/empty.txt', 't/list.txt']);
      const list = execFileSync('tar', ['-xzOf', out, 't/list.txt'], { encoding: 'utf8' });
      expect(list).toBe([...files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => `${sha256(f.bytes)} ${f.name}\n`).join(''));
      await expect(writeTarGz({
        outPath: join(dir, 'dup.tar.gz'), topDir: 't', entries: [{ name: 'list.txt', source: { bytes: new Uint8Array(1) }, size: 1 }], level: 1, progress: silentProgress,
        finalEntry: { name: 'list.txt', bytes: () => new Uint8Array(0) },
      })).rejects.toThrow(/duplicate archive entry list\.txt/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
