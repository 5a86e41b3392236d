/**
 * Downloads one file of a hub repo into a cache blob: resumable, verified, atomic.
 *
 * Why our own code rather than @huggingface/hub's `downloadFileToCacheDir`/`snapshotDownload`
 * (read in node_modules/@huggingface/hub 2.17.5, src/lib/download-file-to-cache-dir.ts):
 * the library streams into `blobs/<etag>.incomplete` and renames, but it checks neither size
 * nor hash (a truncated body would become a blob when the stream ends cleanly), never resumes
 * (a partial is overwritten from byte 0), writes no refs/<revision> for single files, uses the
 * xet protocol for xet-backed files, and logs with console.debug. So the library is used only
 * for metadata (commit sha, file listing with sizes and hashes) and the bytes come from plain
 * GETs of `{hubUrl}/{repo}/resolve/{commit}/{path}`, which the hub answers directly or with a
 * redirect to its CDN, for every storage backend (git, LFS, xet).
 *
 * Guarantees: bytes land in `<blob>.incomplete`; an interrupted transfer is resumed with an
 * HTTP Range request (restarted from 0 if the server ignores Range); the complete file must have
 * the listed size and hash (sha256 for LFS files, the git blob sha1 for regular files) before it
 * is renamed to `<blob>`. A hash mismatch deletes the partial; nothing corrupt is ever renamed.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsError, UserError } from '../common/errors.js';

export interface ExpectedContent {
  size: number;
  /** Hash the content must have: sha256 (LFS files) or the git blob sha1 (regular files). */
  hash?: { kind: 'sha256' | 'git-sha1'; hex: string };
}

export interface BlobDownload {
  /** `{hubUrl}/{repo}/resolve/{commit}/{path}` */
  url: string;
  /** For messages: `owner/name@commit: path`. */
  label: string;
  commit: string;
  expected: ExpectedContent;
  blobPath: string;
  incompletePath: string;
  /** Origin the token may be sent to (the hub; never the CDN it redirects to). */
  hubOrigin: string;
  token?: string;
  fetch: typeof fetch;
  /** Called with each batch of new bytes; a negative count when a partial is discarded. */
  onBytes: (delta: number) => void;
  maxAttempts?: number;
  retryDelayMs?: number;
  /** Abort a request that delivers nothing for this long (then retry). */
  idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 10;

/** A download failure that retrying cannot fix (404, auth, metadata disagreement). */
class FatalDownloadError extends UserError {
  /** Whether the partial is worthless (wrong file) rather than just unreachable right now. */
  constructor(message: string, readonly discardPartial = true) {
    super(message);
  }
}

export async function downloadBlob(d: BlobDownload): Promise<void> {
  const maxAttempts = d.maxAttempts ?? 5;
  const hasher = new ContentHasher(d.expected);
  let retriedAfterMismatch = false;
  let lastFailure = '';
  // A partial left by an interrupted run counts as progress already made.
  const leftOver = (await partialSize(d.incompletePath)) ?? 0;
  if (leftOver > d.expected.size) await rm(d.incompletePath, { force: true });
  else d.onBytes(leftOver);
  if (d.expected.size === 0) await (await openPartial(d.incompletePath, 0)).close(); // nothing to fetch
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const offset = (await partialSize(d.incompletePath)) ?? 0;
    const resumed = offset > 0;
    if (offset < d.expected.size) {
      try {
        await hasher.syncTo(d.incompletePath, offset);
        await transfer(d, offset, hasher);
      } catch (err) {
        if (err instanceof FatalDownloadError) {
          if (err.discardPartial) await discardPartial(d, (await partialSize(d.incompletePath)) ?? 0);
          throw err;
        }
        if (err instanceof UserError) throw err; // file-system errors: keep the partial for a later resume
        lastFailure = describe(err);
        if (attempt < maxAttempts) await delay((d.retryDelayMs ?? 250) * attempt);
        continue;
      }
    }
    await hasher.syncTo(d.incompletePath, d.expected.size);
    const actual = hasher.digest();
    if (d.expected.hash && actual !== d.expected.hash.hex) {
      await discardPartial(d, d.expected.size);
      const why = `${d.label}: downloaded content has ${d.expected.hash.kind} ${actual}, expected ${d.expected.hash.hex}`;
      // A stale partial from an earlier run may be what is wrong: start once from zero.
      if (resumed && !retriedAfterMismatch) {
        retriedAfterMismatch = true;
        lastFailure = why;
        continue;
      }
      throw new UserError(`${why}; the download was discarded`);
    }
    try {
      await rename(d.incompletePath, d.blobPath);
    } catch (err) {
      throw fsError('cannot write', d.blobPath, err);
    }
    return;
  }
  throw new UserError(
    `${d.label}: download failed after ${maxAttempts} attempts (${lastFailure}); run again to resume`,
  );
}

/** One GET from `offset` to the end, appended to the partial file. */
async function transfer(d: BlobDownload, offset: number, hasher: ContentHasher): Promise<void> {
  const abort = new AbortController();
  const idleMs = d.idleTimeoutMs ?? 60_000;
  let timer = setTimeout(() => abort.abort(), idleMs);
  const keepAlive = () => { clearTimeout(timer); timer = setTimeout(() => abort.abort(), idleMs); };
  try {
    const res = await requestFollowingRedirects(d, offset, abort.signal);
    let position = offset;
    if (res.status === 206) {
      const start = contentRangeStart(res.headers.get('content-range'));
      if (start !== offset) {
        await res.body?.cancel();
        await discardPartial(d, offset);
        throw new Error(`server answered a range request from byte ${start ?? '?'} instead of ${offset}`);
      }
    } else if (offset > 0) {
      // 200: the server ignored Range and sends the whole file; start over.
      d.onBytes(-offset);
      position = 0;
      await hasher.syncTo(d.incompletePath, 0);
    }
    if (!res.body) throw new Error('response has no body');
    const fh = await openPartial(d.incompletePath, position);
    try {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        keepAlive();
        if (position + value.byteLength > d.expected.size) {
          await reader.cancel();
          throw new FatalDownloadError(`${d.label}: server sent more than the expected ${d.expected.size} bytes`);
        }
        await writeAt(fh, value, position, d.incompletePath);
        hasher.update(value, position);
        position += value.byteLength;
        d.onBytes(value.byteLength);
      }
    } finally {
      await fh.close();
    }
    if (position < d.expected.size) {
      throw new Error(`connection ended at byte ${position} of ${d.expected.size}`);
    }
  } catch (err) {
    if (abort.signal.aborted && !(err instanceof UserError)) throw new Error(`no data for ${idleMs / 1000}s`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * GET with `redirect: 'manual'`, so that the Range header goes to the CDN too, the token only
 * to the hub's origin, and the hub's own headers (x-repo-commit, x-linked-etag/-size, etag) can
 * be checked against the listing before any byte is written.
 */
async function requestFollowingRedirects(d: BlobDownload, offset: number, signal: AbortSignal): Promise<Response> {
  let url = new URL(d.url);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    if (d.token && url.origin === d.hubOrigin) headers.authorization = `Bearer ${d.token}`;
    const res = await d.fetch(url, { headers, redirect: 'manual', signal });
    if (url.origin === d.hubOrigin) checkHubHeaders(d, res);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    if (res.ok) return res;
    await res.body?.cancel();
    const code = res.headers.get('x-error-code');
    const detail = `HTTP ${res.status}${code ? ` ${code}` : ''}`;
    if (res.status === 404) throw new FatalDownloadError(`${d.label}: not found on the hub (${detail})`);
    if (res.status === 401 || res.status === 403) {
      throw new FatalDownloadError(
        `${d.label}: access denied (${detail}); for a gated or private repo set HF_TOKEN or log in with a token`,
        false,
      );
    }
    if (res.status === 416) {
      await discardPartial(d, offset);
      throw new Error(`${detail} for a range from byte ${offset}`);
    }
    if (res.status >= 500 || res.status === 408 || res.status === 429) throw new Error(detail);
    throw new FatalDownloadError(`${d.label}: download failed (${detail})`);
  }
  throw new FatalDownloadError(`${d.label}: more than ${MAX_REDIRECTS} redirects`);
}

/** The hub's view of the file must match the listing we are verifying against. */
function checkHubHeaders(d: BlobDownload, res: Response): void {
  const commit = res.headers.get('x-repo-commit');
  if (commit && commit !== d.commit) {
    throw new FatalDownloadError(`${d.label}: the hub served commit ${commit} instead of ${d.commit}`);
  }
  const linkedSize = res.headers.get('x-linked-size');
  if (linkedSize && Number(linkedSize) !== d.expected.size) {
    throw new FatalDownloadError(`${d.label}: the hub reports ${linkedSize} bytes, the listing ${d.expected.size}`);
  }
  const redirect = res.status >= 300 && res.status < 400;
  const linkedEtag = normalizeEtag(res.headers.get('x-linked-etag'));
  const etag = linkedEtag ?? (redirect ? undefined : normalizeEtag(res.headers.get('etag')));
  const want = d.expected.hash;
  // Only compare hashes of the same kind (64 hex = sha256, 40 hex = git sha1); other etags are opaque.
  const kind = etag && /^[0-9a-f]{64}$/.test(etag) ? 'sha256' : etag && /^[0-9a-f]{40}$/.test(etag) ? 'git-sha1' : undefined;
  if (want && kind === want.kind && etag !== want.hex) {
    throw new FatalDownloadError(`${d.label}: the hub reports etag ${etag}, the listing ${want.hex}`);
  }
}

export function normalizeEtag(value: string | null): string | undefined {
  if (!value) return undefined;
  return value.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

function contentRangeStart(header: string | null): number | undefined {
  const m = header && /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header.trim());
  return m ? Number(m[1]) : undefined;
}

/**
 * Incremental hash of the partial file: bytes are hashed as they are written, so a resumed
 * download only re-reads the prefix that an earlier run left behind.
 */
class ContentHasher {
  private hash: Hash | undefined;
  private hashed = 0;

  constructor(private readonly expected: ExpectedContent) {}

  /** Makes the hash cover exactly bytes [0, offset) of `path`. */
  async syncTo(path: string, offset: number): Promise<void> {
    if (this.hash && this.hashed === offset) return;
    this.hash = this.fresh();
    this.hashed = 0;
    if (offset === 0) return;
    try {
      for await (const chunk of createReadStream(path, { start: 0, end: offset - 1, highWaterMark: 1 << 22 })) {
        this.hash.update(chunk as Buffer);
        this.hashed += (chunk as Buffer).byteLength;
      }
    } catch (err) {
      throw fsError('cannot read', path, err);
    }
    if (this.hashed !== offset) throw new UserError(`${path}: shorter than ${offset} bytes while resuming`);
  }

  update(bytes: Uint8Array, position: number): void {
    if (!this.hash || position !== this.hashed) throw new Error('hasher out of step with the partial file');
    this.hash.update(bytes);
    this.hashed += bytes.byteLength;
  }

  digest(): string {
    const hex = (this.hash ?? this.fresh()).digest('hex');
    this.hash = undefined;
    return hex;
  }

  private fresh(): Hash {
    if (this.expected.hash?.kind === 'git-sha1') {
      return createHash('sha1').update(`blob ${this.expected.size}\0`);
    }
    return createHash('sha256');
  }
}

async function partialSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError('cannot read', path, err);
  }
}

async function discardPartial(d: BlobDownload, bytes: number): Promise<void> {
  await rm(d.incompletePath, { force: true });
  if (bytes > 0) d.onBytes(-bytes);
}

async function openPartial(path: string, position: number): Promise<FileHandle> {
  try {
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, position === 0 ? 'w' : 'r+');
    if (position > 0) await fh.truncate(position);
    return fh;
  } catch (err) {
    throw fsError('cannot write', path, err);
  }
}

async function writeAt(fh: FileHandle, bytes: Uint8Array, position: number, path: string): Promise<void> {
  try {
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await fh.write(bytes, written, bytes.byteLength - written, position + written);
      written += bytesWritten;
    }
  } catch (err) {
    throw fsError('cannot write', path, err);
  }
}

function describe(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const cause = e?.cause?.code ?? e?.cause?.message;
  return cause ? `${e.message}: ${cause}` : (e?.message ?? String(err));
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
