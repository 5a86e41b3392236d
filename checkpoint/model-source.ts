/**
 * Where a checkpoint comes from: a local directory, or a Hugging Face hub repo id resolved
 * through the standard hub cache (shared with Python), downloading only what the toolkit reads.
 *
 *   model ──exists?──> local dir (must hold config.json) ─────────────────────────> { dir }
 *     └─ owner/name ─ offline? ─> refs/<revision> -> snapshots/<commit> (complete?) ─> { dir, commit }
 *                     online ──> modelInfo(sha) + listFiles(commit) ──> for each needed file:
 *                                snapshot link ok? / blob ok? / download blob ──> { dir, commit }
 *                                (hub unreachable: fall back to the cache as offline does)
 */
import { HubApiError, listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fsError, UserError } from '../common/errors.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { fileSize, hubCacheDir, isCommitSha, RepoCache } from './hub-cache.js';
import { downloadBlob, type ExpectedContent } from './hub-download.js';
import {
  CONFIG_FILE, METADATA_FILES, missingCheckpointFiles, readWeightShards, WEIGHTS_FILE, WEIGHTS_INDEX_FILE,
} from './hub-files.js';
import { hubToken } from './hub-token.js';

export interface ModelSourceOptions {
  /** Branch, tag or commit sha (hub ids only). Default "main". */
  revision?: string;
  /** Hub cache root; default $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default $HF_ENDPOINT or https://huggingface.co. */
  hubUrl?: string;
  /** Resolve from the cache only; default from $HF_HUB_OFFLINE. */
  offline?: boolean;
  progress?: Progress;
}

export interface ModelSource {
  /** Directory holding config.json and the safetensors (a cache snapshot for hub ids). */
  dir: string;
  repo?: string;
  /** The revision asked for (hub ids only). */
  revision?: string;
  /** The commit sha it resolved to (hub ids only): what a package manifest records. */
  commit?: string;
  /** True when nothing had to be downloaded. */
  fromCache: boolean;
}

const DEFAULT_HUB_URL = 'https://huggingface.co';
const DEFAULT_REVISION = 'main';
const METADATA_TIMEOUT_MS = 60_000;

export async function resolveModelSource(model: string, opts: ModelSourceOptions = {}): Promise<ModelSource> {
  const local = await localDirectory(model);
  if (local) {
    if (opts.revision !== undefined) {
      throw new UserError(`--revision ${opts.revision} applies to hub repo ids, but ${model} is a local directory`);
    }
    return { dir: local, fromCache: false };
  }
  const repo = parseRepoId(model);
  const revision = parseRevision(opts.revision ?? DEFAULT_REVISION);
  const cacheDir = hubCacheDir(opts.cacheDir);
  const cache = new RepoCache(cacheDir, repo);
  if (opts.offline ?? envFlag(process.env.HF_HUB_OFFLINE)) {
    return resolveFromCache(cache, revision, 'offline mode');
  }
  const hubUrl = (opts.hubUrl ?? process.env.HF_ENDPOINT ?? DEFAULT_HUB_URL).replace(/\/+$/, '');
  return resolveFromHub(cache, revision, hubUrl, opts.progress ?? silentProgress);
}

/** The absolute path when `model` names an existing directory with a config.json. */
async function localDirectory(model: string): Promise<string | undefined> {
  let isDir: boolean;
  try {
    isDir = (await stat(model)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fsError('cannot read', model, err);
    if (looksLikePath(model)) throw new UserError(`${model}: no such directory`);
    return undefined;
  }
  if (!isDir) throw new UserError(`${model}: is a file; expected a checkpoint directory or a hub repo id owner/name`);
  const dir = resolve(model);
  if ((await fileSize(join(dir, CONFIG_FILE))) === undefined) {
    throw new UserError(`${model}: no ${CONFIG_FILE} in this directory; not a Hugging Face checkpoint`);
  }
  return dir;
}

const looksLikePath = (s: string): boolean =>
  s.startsWith('/') || s.startsWith('.') || s.startsWith('~') || s.includes('\\') || /^[A-Za-z]:/.test(s)
  || s.split('/').length > 2 || s.endsWith('/');

/** `owner/name` as the hub allows it (huggingface_hub's validate_repo_id, owner required). */
export function parseRepoId(model: string): string {
  const part = /^[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?$/;
  const [owner, name, ...rest] = model.split('/');
  const valid = rest.length === 0 && name !== undefined && part.test(owner) && part.test(name)
    && !model.includes('--') && !model.includes('..') && !name.endsWith('.git');
  if (!valid) {
    throw new UserError(`"${model}" is neither an existing directory nor a Hugging Face repo id (owner/name)`);
  }
  return model;
}

/** Branch, tag or sha; also a path inside refs/, so nothing that could climb out of it. */
function parseRevision(revision: string): string {
  const ok = /^[\w.+=@-]+(\/[\w.+=@-]+)*$/.test(revision) && !revision.split('/').some((s) => s === '.' || s === '..');
  if (!ok) throw new UserError(`--revision "${revision}" is not a valid branch, tag or commit sha`);
  return revision;
}

const envFlag = (v: string | undefined): boolean => ['1', 'ON', 'YES', 'TRUE'].includes((v ?? '').trim().toUpperCase());

/** Offline resolution: refs/<revision> -> snapshots/<commit>, which must hold config + all weights. */
async function resolveFromCache(cache: RepoCache, revision: string, why: string): Promise<ModelSource> {
  const at = `${cache.repo}@${revision}`;
  const commit = await cache.commitFor(revision);
  if (!commit) {
    throw new UserError(
      `${why}: ${at} is not in the Hugging Face cache (no ${cache.refPath(revision)}); run once online or pass a commit sha as --revision`,
    );
  }
  const dir = cache.snapshotDir(commit);
  let isDir = false;
  try { isDir = (await stat(dir)).isDirectory(); } catch { /* reported below */ }
  if (!isDir) throw new UserError(`${why}: ${at} (commit ${commit}) has no cached snapshot ${dir}`);
  const missing = await missingCheckpointFiles(dir);
  if (missing.length > 0) {
    throw new UserError(`${why}: the cached snapshot of ${at} (commit ${commit}) lacks ${missing.join(', ')} in ${dir}`);
  }
  return { dir, repo: cache.repo, revision, commit, fromCache: true };
}

interface HubContext {
  cache: RepoCache;
  revision: string;
  commit: string;
  hubUrl: string;
  token: string | undefined;
  progress: Progress;
  files: Map<string, ListFileEntry>;
}

async function resolveFromHub(cache: RepoCache, revision: string, hubUrl: string, progress: Progress): Promise<ModelSource> {
  const at = `${cache.repo}@${revision}`;
  const token = await hubToken();
  const fetchHub = authorizedFetch(new URL(hubUrl).origin, token);
  let commit: string;
  let files: Map<string, ListFileEntry>;
  try {
    const info = await modelInfo({ name: cache.repo, revision, additionalFields: ['sha'], hubUrl, fetch: fetchHub });
    if (typeof info.sha !== 'string' || !isCommitSha(info.sha)) {
      throw new UserError(`${at}: the hub did not report a commit sha for this revision`);
    }
    commit = info.sha;
    files = new Map();
    for await (const entry of listFiles({ repo: cache.repo, revision: commit, hubUrl, fetch: fetchHub })) {
      if (entry.type === 'file') files.set(entry.path, entry);
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (!isUnreachable(err)) throw hubError(err, at);
    // Like huggingface_hub: without the hub, a complete cached snapshot is still good.
    const cached = await resolveFromCache(cache, revision, `cannot reach ${hubUrl} (${describeCause(err)})`);
    progress.info(`${hubUrl} unreachable; using the cached snapshot of ${at} (commit ${cached.commit})`);
    return cached;
  }

  const ctx: HubContext = { cache, revision, commit, hubUrl, token, progress, files };
  if (!files.has(CONFIG_FILE)) throw new UserError(`${at}: the repo has no ${CONFIG_FILE}; not a Hugging Face checkpoint`);
  const metadata = METADATA_FILES.filter((f) => files.has(f));
  if (files.has(WEIGHTS_INDEX_FILE)) metadata.push(WEIGHTS_INDEX_FILE);
  const counter = { done: 0, total: 0, downloaded: 0 };
  try {
    await ensureFiles(ctx, metadata, counter);
    let weights: string[];
    if (files.has(WEIGHTS_INDEX_FILE)) {
      weights = await readWeightShards(cache.snapshotFile(commit, WEIGHTS_INDEX_FILE));
      const absent = weights.filter((w) => !files.has(w));
      if (absent.length > 0) {
        throw new UserError(`${at}: ${WEIGHTS_INDEX_FILE} names ${absent.join(', ')}, which the repo does not have`);
      }
    } else if (files.has(WEIGHTS_FILE)) {
      weights = [WEIGHTS_FILE];
    } else {
      throw new UserError(`${at}: the repo has no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE} (only safetensors checkpoints are supported)`);
    }
    await ensureFiles(ctx, weights, counter);
  } finally {
    progress.finish();
  }
  await cache.writeRef(revision, commit);
  return { dir: cache.snapshotDir(commit), repo: cache.repo, revision, commit, fromCache: counter.downloaded === 0 };
}

/** Makes snapshots/<commit>/<file> exist for each file: already linked, linked to a present blob, or downloaded. */
async function ensureFiles(
  ctx: HubContext, names: string[], counter: { done: number; total: number; downloaded: number },
): Promise<void> {
  const todo: { name: string; etag: string; expected: ExpectedContent }[] = [];
  for (const name of names) {
    const { etag, expected } = contentOf(ctx, ctx.files.get(name)!);
    if ((await fileSize(ctx.cache.snapshotFile(ctx.commit, name))) === expected.size) continue;
    if ((await fileSize(ctx.cache.blobPath(etag))) === expected.size) {
      await ctx.cache.linkSnapshotFile(ctx.commit, name, etag);
      continue;
    }
    todo.push({ name, etag, expected });
  }
  if (todo.length === 0) return;
  const bytes = todo.reduce((sum, t) => sum + t.expected.size, 0);
  counter.total += bytes;
  const task = `download ${ctx.cache.repo}`;
  ctx.progress.info(
    `${ctx.cache.repo}@${ctx.commit.slice(0, 12)}: downloading ${todo.length} file(s), ${formatBytes(bytes)}, into ${ctx.cache.root}`,
  );
  const encodedCommit = encodeURIComponent(ctx.commit);
  for (const { name, etag, expected } of todo) {
    await downloadBlob({
      url: `${ctx.hubUrl}/${ctx.cache.repo}/resolve/${encodedCommit}/${name.split('/').map(encodeURIComponent).join('/')}`,
      label: `${ctx.cache.repo}@${ctx.commit}: ${name}`,
      commit: ctx.commit,
      expected,
      blobPath: ctx.cache.blobPath(etag),
      incompletePath: ctx.cache.incompletePath(etag),
      hubOrigin: new URL(ctx.hubUrl).origin,
      token: ctx.token,
      fetch,
      onBytes: (delta) => {
        counter.done += delta;
        ctx.progress.update(task, counter.done, counter.total);
      },
    });
    await ctx.cache.linkSnapshotFile(ctx.commit, name, etag);
    counter.downloaded += 1;
  }
}

/**
 * The blob name and the content a listed file must have. Blob names follow Python's cache:
 * the LFS sha256 for LFS (and xet) files, the git blob sha1 for regular files.
 */
function contentOf(ctx: HubContext, entry: ListFileEntry): { etag: string; expected: ExpectedContent } {
  let result: { etag: string | undefined; expected: ExpectedContent };
  if (entry.lfs) {
    result = { etag: entry.lfs.oid, expected: { size: entry.lfs.size, hash: { kind: 'sha256', hex: entry.lfs.oid } } };
  } else if (entry.xetHash) {
    // Xet-only entry without an LFS pointer: no sha256 to check, the size still is.
    result = { etag: entry.xetHash, expected: { size: entry.size } };
  } else {
    result = { etag: entry.oid, expected: { size: entry.size, hash: { kind: 'git-sha1', hex: entry.oid ?? '' } } };
  }
  if (!result.etag || !/^[0-9a-f]{40,64}$/.test(result.etag) || !Number.isSafeInteger(result.expected.size)) {
    throw new UserError(`${ctx.cache.repo}@${ctx.commit}: the hub listing of ${entry.path} has no usable hash or size`);
  }
  return { etag: result.etag, expected: result.expected };
}

/** fetch for the hub API: the token goes only to the hub's origin; a stalled call times out. */
function authorizedFetch(hubOrigin: string, token: string | undefined): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    if (token && url.origin === hubOrigin && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers, signal: init?.signal ?? AbortSignal.timeout(METADATA_TIMEOUT_MS) });
  };
}

/** Connection-level failures and hub outages, where the cache may stand in. */
function isUnreachable(err: unknown): boolean {
  if (err instanceof HubApiError) return err.statusCode >= 500;
  const name = (err as Error)?.name;
  return (err instanceof TypeError && (err as Error).message === 'fetch failed') || name === 'TimeoutError' || name === 'AbortError';
}

function hubError(err: unknown, at: string): UserError {
  if (err instanceof HubApiError) {
    const why = firstSentence(err.message);
    if (err.statusCode === 401 || err.statusCode === 403) {
      return new UserError(`${at}: access denied by the hub (HTTP ${err.statusCode}: ${why}); for a gated or private repo set HF_TOKEN`);
    }
    if (err.statusCode === 404) {
      return new UserError(`${at}: not found on the hub (HTTP 404: ${why}); check the repo id and revision (private repos need HF_TOKEN)`);
    }
    return new UserError(`${at}: hub request failed (HTTP ${err.statusCode}: ${why})`);
  }
  return new UserError(`${at}: unexpected answer from the hub (${(err as Error)?.message ?? String(err)})`);
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

const firstSentence = (message: string): string => message.split('. URL:')[0];

function describeCause(err: unknown): string {
  if (err instanceof HubApiError) return `HTTP ${err.statusCode}`;
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}
