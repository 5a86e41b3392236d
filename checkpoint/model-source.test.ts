import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { createServer } from 'node:net';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { Prng } from '../common/prng.js';
import { FakeHub, gitBlobSha1, sha256Hex, type FakeFile } from './hub-fake.test-support.js';
import { parseRepoId, resolveModelSource } from './model-source.js';

const REPO = 'acme/tiny-asr';
const COMMIT = 'a'.repeat(40);
const TAG_COMMIT = 'b'.repeat(40);
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';

function randomBytes(seed: number, n: number): Buffer {
  const rng = new Prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng.nextU32() & 0xff;
  return b;
}

/** A small sharded repo, plus files the toolkit must not fetch. */
let repoFilesOnce: Record<string, FakeFile> | undefined;
function repoFiles(): Record<string, FakeFile> {
  return repoFilesOnce ??= {
    'config.json': { content: Buffer.from('{"model_type":"qwen3_asr"}\n') },
    'tokenizer_config.json': { content: Buffer.from('{"model_max_length":65536}\n') },
    'vocab.json': { content: Buffer.from('{"a":0}\n') },
    'merges.txt': { content: Buffer.alloc(0) }, // empty: nothing to fetch, still verified and linked
    'model.safetensors.index.json': {
      content: Buffer.from(JSON.stringify({ metadata: {}, weight_map: { 'a.weight': SHARD1, 'b.weight': SHARD2 } })),
    },
    [SHARD1]: { content: randomBytes(1, 300_000), lfs: true },
    [SHARD2]: { content: randomBytes(2, 200_001), lfs: true },
    'README.md': { content: Buffer.from('# tiny\n') },
    'extra.safetensors': { content: randomBytes(3, 1000), lfs: true },
    'pytorch_model.bin': { content: randomBytes(4, 1000), lfs: true },
  };
}
const NEEDED = ['config.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'model.safetensors.index.json', SHARD1, SHARD2];

const HF_VARS = ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME', 'HF_TOKEN',
  'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'HF_ENDPOINT'];

let tmp: string;
let cacheDir: string;
let hub: FakeHub;
let savedEnv: Record<string, string | undefined>;

beforeEach(async () => {
  savedEnv = Object.fromEntries(HF_VARS.map((k) => [k, process.env[k]]));
  for (const k of HF_VARS) delete process.env[k];
  tmp = await mkdtemp(join(tmpdir(), 'model-source-'));
  cacheDir = join(tmp, 'hub-cache');
  process.env.HF_HOME = join(tmp, 'hf-home'); // no token file there unless a test writes one
  process.env.HF_HUB_CACHE = cacheDir;
  hub = await new FakeHub(REPO, COMMIT, repoFiles(), { main: COMMIT, v1: TAG_COMMIT }).start();
});

afterEach(async () => {
  await hub.close();
  for (const k of HF_VARS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  await rm(tmp, { recursive: true, force: true });
});

const repoRoot = () => join(cacheDir, 'models--acme--tiny-asr');
const snapshot = (commit = COMMIT) => join(repoRoot(), 'snapshots', commit);
const blobs = async () => (await readdir(join(repoRoot(), 'blobs')).catch(() => [] as string[])).sort();
const fileEtag = (f: FakeFile) => (f.lfs ? sha256Hex(f.content) : gitBlobSha1(f.content));

async function expectSnapshotHolds(names: string[], commit = COMMIT): Promise<void> {
  const files = repoFiles();
  for (const name of names) {
    // Compare hashes: a deep toEqual over 300 kB buffers is needlessly slow.
    expect(sha256Hex(await readFile(join(snapshot(commit), name))), name).toBe(sha256Hex(files[name].content));
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** A port nothing listens on: a hub that cannot be reached. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

describe('resolveModelSource from the hub', () => {
  it('downloads only the needed files into the Python cache layout and records the commit', async () => {
    const src = await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    expect(src).toEqual({ dir: snapshot(), repo: REPO, revision: 'main', commit: COMMIT, fromCache: false });
    await expectSnapshotHolds(NEEDED);
    expect((await readdir(snapshot())).sort()).toEqual([...NEEDED].sort());
    const files = repoFiles();
    expect(await blobs()).toEqual(NEEDED.map((n) => fileEtag(files[n])).sort());
    // Snapshot entries are relative symlinks into blobs/, like huggingface_hub makes.
    expect((await lstat(join(snapshot(), SHARD1))).isSymbolicLink()).toBe(true);
    expect(await readlink(join(snapshot(), SHARD1))).toBe(join('..', '..', 'blobs', sha256Hex(files[SHARD1].content)));
    expect((await readFile(join(repoRoot(), 'refs', 'main'), 'utf8')).trim()).toBe(COMMIT);
    // Skipped files were never requested; LFS bytes came from the CDN.
    const urls = hub.contentRequests().map((r) => r.url);
    for (const skipped of ['README.md', 'extra.safetensors', 'pytorch_model.bin']) {
      expect(urls.some((u) => u.includes(skipped))).toBe(false);
    }
    expect(hub.requests.filter((r) => r.origin === 'cdn')).toHaveLength(2);
  });

  it('resolves a second time from the cache without fetching any file', async () => {
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    const before = hub.contentRequests().length;
    expect(before).toBe(NEEDED.length - 1 + 2); // one resolve GET per non-empty file, plus two CDN GETs
    const again = await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    expect(again).toEqual({ dir: snapshot(), repo: REPO, revision: 'main', commit: COMMIT, fromCache: true });
    expect(hub.contentRequests().length).toBe(before);
  });

  it('resolves a tag or a commit sha and records the commit; an unknown revision is a clear error', async () => {
    const tagged = await resolveModelSource(REPO, { hubUrl: hub.hubUrl, revision: 'v1' });
    expect(tagged.commit).toBe(TAG_COMMIT);
    expect(tagged.dir).toBe(snapshot(TAG_COMMIT));
    expect((await readFile(join(repoRoot(), 'refs', 'v1'), 'utf8')).trim()).toBe(TAG_COMMIT);
    // Same blobs, so the main snapshot links them without downloading.
    const contentBefore = hub.contentRequests().length;
    const bySha = await resolveModelSource(REPO, { hubUrl: hub.hubUrl, revision: COMMIT });
    expect(bySha).toMatchObject({ commit: COMMIT, revision: COMMIT, fromCache: true });
    expect(hub.contentRequests().length).toBe(contentBefore);
    await expectSnapshotHolds(NEEDED);
    await expect(readdir(join(repoRoot(), 'refs'))).resolves.toEqual(['v1']);

    const err = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl, revision: 'nope' }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/acme\/tiny-asr@nope: not found on the hub/);
  });

  it('sends the token to the hub only, never to the CDN', async () => {
    process.env.HF_TOKEN = 'hf_secret';
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    const hubReqs = hub.requests.filter((r) => r.origin === 'hub');
    expect(hubReqs.length).toBeGreaterThan(0);
    expect(hubReqs.every((r) => r.authorization === 'Bearer hf_secret')).toBe(true);
    expect(hub.requests.filter((r) => r.origin === 'cdn').every((r) => r.authorization === undefined)).toBe(true);
  });

  it('reads the token from $HF_HOME/token, or from $HF_TOKEN_PATH', async () => {
    await mkdir(process.env.HF_HOME!, { recursive: true });
    await writeFile(join(process.env.HF_HOME!, 'token'), 'hf_fromfile\n');
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    expect(hub.requests[0].authorization).toBe('Bearer hf_fromfile');
    process.env.HF_TOKEN_PATH = join(tmp, 'other-token');
    await writeFile(process.env.HF_TOKEN_PATH, 'hf_frompath');
    hub.requests.length = 0;
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    expect(hub.requests[0].authorization).toBe('Bearer hf_frompath');
  });

  it('a missing file (404) is a clear error and leaves no partial file or ref', async () => {
    hub.faults.missing = new Set([SHARD2]);
    const err = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toBe(`${REPO}@${COMMIT}: ${SHARD2}: not found on the hub (HTTP 404 EntryNotFound)`);
    const names = await blobs();
    expect(names.some((n) => n.endsWith('.incomplete'))).toBe(false);
    expect(names).not.toContain(sha256Hex(repoFiles()[SHARD2].content));
    await expect(lstat(join(snapshot(), SHARD2))).rejects.toThrow();
    await expect(lstat(join(repoRoot(), 'refs', 'main'))).rejects.toThrow();
  });

  it('a transfer cut mid-body is resumed with a Range request and verified', async () => {
    hub.faults.truncate = { [SHARD1]: 1, 'config.json': 1 };
    const src = await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await expectSnapshotHolds(NEEDED);
    expect(src.fromCache).toBe(false);
    const ranges = hub.contentRequests().filter((r) => r.range).map((r) => r.range);
    const files = repoFiles();
    expect(ranges.sort()).toEqual([
      `bytes=${Math.floor(files[SHARD1].content.byteLength / 2)}-`, // the CDN
      `bytes=${Math.floor(files[SHARD1].content.byteLength / 2)}-`, // the hub, before its redirect
      `bytes=${Math.floor(files['config.json'].content.byteLength / 2)}-`,
    ].sort());
  });

  it('restarts from zero when the server ignores Range', async () => {
    hub.faults.truncate = { [SHARD2]: 1 };
    hub.faults.ignoreRange = true;
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await expectSnapshotHolds(NEEDED);
    expect(await blobs()).toContain(sha256Hex(repoFiles()[SHARD2].content));
  });

  it('a transfer that keeps failing is an error that leaves no blob, and the next run resumes', async () => {
    hub.faults.truncate = { [SHARD1]: 1000 };
    const err = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(new RegExp(`${SHARD1}: download failed after 5 attempts .*run again to resume`));
    const sha = sha256Hex(repoFiles()[SHARD1].content);
    expect(await blobs()).not.toContain(sha);
    expect(await blobs()).toContain(`${sha}.incomplete`);
    await expect(lstat(join(snapshot(), SHARD1))).rejects.toThrow();

    hub.faults.truncate = {};
    hub.requests.length = 0;
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await expectSnapshotHolds(NEEDED);
    const cdn = hub.requests.filter((r) => r.origin === 'cdn' && r.url.includes(sha));
    expect(cdn).toHaveLength(1);
    expect(cdn[0].range).toMatch(/^bytes=[1-9]\d*-$/);
    expect(await blobs()).not.toContain(`${sha}.incomplete`);
  });

  it('rejects content whose hash does not match the listing, regular (git sha1) and LFS (sha256) alike', async () => {
    hub.faults.corrupt = { 'vocab.json': Buffer.from('{"b":0}\n') };
    const err1 = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err1).toBeInstanceOf(UserError);
    expect(err1.message).toBe(
      `${REPO}@${COMMIT}: vocab.json: downloaded content has git-sha1 ${gitBlobSha1(Buffer.from('{"b":0}\n'))}, expected ${gitBlobSha1(repoFiles()['vocab.json'].content)}; the download was discarded`,
    );
    expect(await blobs()).not.toContain(gitBlobSha1(repoFiles()['vocab.json'].content));

    const shard = repoFiles()[SHARD2].content;
    const bad = randomBytes(9, shard.byteLength);
    hub.faults.corrupt = { [SHARD2]: bad };
    const err2 = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err2).toBeInstanceOf(UserError);
    expect(err2.message).toBe(
      `${REPO}@${COMMIT}: ${SHARD2}: downloaded content has sha256 ${sha256Hex(bad)}, expected ${sha256Hex(shard)}; the download was discarded`,
    );
    expect((await blobs()).filter((n) => n.startsWith(sha256Hex(shard)))).toEqual([]);
    expect((await blobs()).some((n) => n.endsWith('.incomplete'))).toBe(false);
    await expect(lstat(join(snapshot(), SHARD2))).rejects.toThrow();
    await expect(lstat(join(snapshot(), 'vocab.json'))).resolves.toBeDefined();
  });

  it('rejects a hub whose headers or body disagree with its listing before keeping anything', async () => {
    hub.faults.linkedEtag = { [SHARD1]: 'f'.repeat(64) };
    const err = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err.message).toBe(
      `${REPO}@${COMMIT}: ${SHARD1}: the hub reports etag ${'f'.repeat(64)}, the listing ${sha256Hex(repoFiles()[SHARD1].content)}`,
    );
    expect(hub.requests.some((r) => r.origin === 'cdn')).toBe(false);

    hub.faults = { corrupt: { [SHARD2]: Buffer.concat([repoFiles()[SHARD2].content, Buffer.from('trailing')]) } };
    const err2 = await rejection(resolveModelSource(REPO, { hubUrl: hub.hubUrl }));
    expect(err2.message).toBe(`${REPO}@${COMMIT}: ${SHARD2}: server sent more than the expected 200001 bytes`);
    expect((await blobs()).filter((n) => n.startsWith(sha256Hex(repoFiles()[SHARD2].content)))).toEqual([]);
  });

  it('reports byte progress that ends at the total, resumed transfers included', async () => {
    hub.faults.truncate = { [SHARD1]: 1 };
    const updates: [string, number, number][] = [];
    const progress = { update: (t: string, d: number, n: number) => { updates.push([t, d, n]); }, info() {}, finish() {} };
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl, progress });
    const total = NEEDED.reduce((sum, n) => sum + repoFiles()[n].content.byteLength, 0);
    expect(updates.at(-1)).toEqual([`download ${REPO}`, total, total]);
    expect(updates.every(([, d, n]) => d >= 0 && d <= n)).toBe(true);
  });

  it('refuses a repo without config.json or without safetensors weights', async () => {
    const cases: [Record<string, FakeFile>, string][] = [
      [{ 'model.safetensors': { content: Buffer.from('x'), lfs: true } }, 'the repo has no config.json; not a Hugging Face checkpoint'],
      [{ 'config.json': { content: Buffer.from('{}') }, 'pytorch_model.bin': { content: Buffer.from('x'), lfs: true } },
        'the repo has no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported)'],
    ];
    for (const [files, message] of cases) {
      const other = await new FakeHub('acme/other', COMMIT, files).start();
      try {
        const err = await rejection(resolveModelSource('acme/other', { hubUrl: other.hubUrl }));
        expect(err).toBeInstanceOf(UserError);
        expect(err.message).toBe(`acme/other@main: ${message}`);
        expect(other.contentRequests().some((r) => /safetensors|\.bin/.test(r.url))).toBe(false);
      } finally {
        await other.close();
      }
    }
  });

  it('a stale partial with wrong bytes is discarded and the file downloaded again', async () => {
    const shard = repoFiles()[SHARD1].content;
    const sha = sha256Hex(shard);
    await mkdir(join(repoRoot(), 'blobs'), { recursive: true });
    await writeFile(join(repoRoot(), 'blobs', `${sha}.incomplete`), randomBytes(7, 1000));
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await expectSnapshotHolds(NEEDED);
    const cdn = hub.requests.filter((r) => r.origin === 'cdn' && r.url.includes(sha)).map((r) => r.range);
    expect(cdn).toEqual(['bytes=1000-', undefined]);
  });
});

describe('resolveModelSource offline', () => {
  it('resolves from the cache with no request at all (opts.offline and HF_HUB_OFFLINE=1)', async () => {
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    hub.requests.length = 0;
    const src = await resolveModelSource(REPO, { hubUrl: hub.hubUrl, offline: true });
    expect(src).toEqual({ dir: snapshot(), repo: REPO, revision: 'main', commit: COMMIT, fromCache: true });
    process.env.HF_HUB_OFFLINE = '1';
    await expect(resolveModelSource(REPO, { hubUrl: hub.hubUrl })).resolves.toEqual(src);
    expect(hub.requests).toHaveLength(0);
  });

  it('with nothing cached is a clear error naming the repo and revision', async () => {
    const err = await rejection(resolveModelSource(REPO, { offline: true, revision: 'v1' }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toBe(
      `offline mode: ${REPO}@v1 is not in the Hugging Face cache (no ${join(repoRoot(), 'refs', 'v1')}); run once online or pass a commit sha as --revision`,
    );
    const bySha = await rejection(resolveModelSource(REPO, { offline: true, revision: COMMIT }));
    expect(bySha.message).toBe(`offline mode: ${REPO}@${COMMIT} (commit ${COMMIT}) has no cached snapshot ${snapshot()}`);
    expect(hub.requests).toHaveLength(0);
  });

  it('names the file an incomplete cached snapshot lacks', async () => {
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await rm(join(snapshot(), SHARD2));
    const err = await rejection(resolveModelSource(REPO, { offline: true }));
    expect(err.message).toBe(`offline mode: the cached snapshot of ${REPO}@main (commit ${COMMIT}) lacks ${SHARD2} in ${snapshot()}`);
  });

  it('falls back to the cache when the hub cannot be reached, and says so when that fails too', async () => {
    const dead = await deadUrl();
    const err = await rejection(resolveModelSource(REPO, { hubUrl: dead }));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(new RegExp(`^cannot reach ${dead} \\(ECONNREFUSED\\): ${REPO}@main is not in the Hugging Face cache`));
    await resolveModelSource(REPO, { hubUrl: hub.hubUrl });
    await expect(resolveModelSource(REPO, { hubUrl: dead })).resolves.toMatchObject({ commit: COMMIT, fromCache: true });
  });

  it('reuses a cache written by Python huggingface_hub', async () => {
    // The layout snapshot_download leaves: blobs named by etag, relative links, refs/main.
    const single: Record<string, FakeFile> = {
      'config.json': { content: Buffer.from('{"model_type":"qwen3_asr","py":true}\n') },
      'model.safetensors': { content: randomBytes(11, 5000), lfs: true },
      'preprocessor_config.json': { content: Buffer.from('{"feature_size":128}\n') },
    };
    const commit = 'c'.repeat(40);
    await mkdir(join(repoRoot(), 'blobs'), { recursive: true });
    await mkdir(snapshot(commit), { recursive: true });
    await mkdir(join(repoRoot(), 'refs'), { recursive: true });
    for (const [name, f] of Object.entries(single)) {
      await writeFile(join(repoRoot(), 'blobs', fileEtag(f)), f.content);
      await symlink(join('..', '..', 'blobs', fileEtag(f)), join(snapshot(commit), name));
    }
    await writeFile(join(repoRoot(), 'refs', 'main'), commit);

    const expected = { dir: snapshot(commit), repo: REPO, revision: 'main', commit, fromCache: true };
    await expect(resolveModelSource(REPO, { offline: true })).resolves.toEqual(expected);
    await expect(resolveModelSource(REPO, { hubUrl: await deadUrl() })).resolves.toEqual(expected);

    // Online against a hub serving that commit: listed, nothing downloaded.
    const pyHub = await new FakeHub(REPO, commit, single).start();
    try {
      await expect(resolveModelSource(REPO, { hubUrl: pyHub.hubUrl })).resolves.toEqual(expected);
      expect(pyHub.contentRequests()).toHaveLength(0);
    } finally {
      await pyHub.close();
    }
  });
});

describe('resolveModelSource with a local path', () => {
  it('uses an existing directory as is', async () => {
    const dir = join(tmp, 'ckpt');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), '{}');
    await expect(resolveModelSource(dir)).resolves.toEqual({ dir, fromCache: false });
    expect(hub.requests).toHaveLength(0);
  });

  it('rejects a file, a directory without config.json, a missing path, a bad id and --revision', async () => {
    const file = join(tmp, 'x.safetensors');
    await writeFile(file, 'x');
    const dir = join(tmp, 'empty');
    await mkdir(dir);
    await writeFile(join(tmp, 'config.json'), '{}');
    const cases: [string, object, string][] = [
      [file, {}, `${file}: is a file; expected a checkpoint directory or a hub repo id owner/name`],
      [dir, {}, `${dir}: no config.json in this directory; not a Hugging Face checkpoint`],
      [join(tmp, 'nope'), {}, `${join(tmp, 'nope')}: no such directory`],
      ['./nope/x', {}, './nope/x: no such directory'],
      ['just-a-name', {}, '"just-a-name" is neither an existing directory nor a Hugging Face repo id (owner/name)'],
      [tmp, { revision: 'main' }, `--revision main applies to hub repo ids, but ${tmp} is a local directory`],
      [REPO, { revision: '../../etc', hubUrl: hub.hubUrl }, '--revision "../../etc" is not a valid branch, tag or commit sha'],
    ];
    for (const [model, opts, message] of cases) {
      const err = await rejection(resolveModelSource(model, opts));
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toBe(message);
    }
    expect(hub.requests).toHaveLength(0);
  });
});

describe('parseRepoId', () => {
  it('accepts owner/name as the hub allows and rejects the rest', () => {
    for (const ok of ['Qwen/Qwen3-ASR-0.6B', 'a/b', 'user_1/model.v2']) expect(parseRepoId(ok)).toBe(ok);
    for (const bad of ['Qwen3-ASR', 'a/b/c', 'a//b', '/a', 'a/b--c', 'a/b..c', 'a/-b', 'a/b.', 'a/b.git', 'a b/c', '']) {
      expect(() => parseRepoId(bad), bad).toThrow(UserError);
    }
  });
});
