/**
 * Test support: a local stand-in for the Hugging Face hub (and its CDN, on a second origin),
 * answering the requests @huggingface/hub and our downloader make, for one small model repo.
 *
 *   GET /api/models/{repo}/revision/{rev}  -> { sha, ... }               (modelInfo)
 *   GET /api/models/{repo}/tree/{rev}      -> [{ path, size, oid, lfs }] (listFiles)
 *   GET /{repo}/resolve/{rev}/{path}       -> regular file: 200/206 with etag = git sha1
 *                                             LFS file: 302 to the CDN with x-linked-etag/-size
 *   GET {cdn}/blobs/{sha256}               -> 200/206 (Range)
 *
 * Faults are switched per file: cut the body short, ignore Range, serve other bytes, 404.
 * Every request is logged so tests can count them.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  content: Buffer;
  /** Stored with LFS: listed with lfs.oid = sha256, served by a redirect to the CDN. */
  lfs?: boolean;
}

export interface FakeFaults {
  /** Number of upcoming content responses for this path to cut off halfway (socket destroyed). */
  truncate?: Record<string, number>;
  /** Answer 200 with the whole file even when a Range is asked for. */
  ignoreRange?: boolean;
  /** Serve these bytes instead of the listed content (same length: only the hash betrays it). */
  corrupt?: Record<string, Buffer>;
  /** Listed, but the resolve endpoint answers 404 EntryNotFound. */
  missing?: Set<string>;
  /** x-linked-etag the hub's redirect reports for this path (disagreeing with the listing). */
  linkedEtag?: Record<string, string>;
}

export interface LoggedRequest {
  origin: 'hub' | 'cdn';
  method: string;
  url: string;
  range?: string;
  authorization?: string;
}

export const gitBlobSha1 = (b: Buffer): string =>
  createHash('sha1').update(`blob ${b.byteLength}\0`).update(b).digest('hex');
export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export class FakeHub {
  readonly requests: LoggedRequest[] = [];
  faults: FakeFaults = {};
  private hub: Server | undefined;
  private cdn: Server | undefined;
  hubUrl = '';
  cdnUrl = '';

  constructor(
    readonly repo: string,
    readonly commit: string,
    readonly files: Record<string, FakeFile>,
    readonly branches: Record<string, string> = { main: commit },
  ) {}

  async start(): Promise<this> {
    this.hub = await listen((req, res) => this.answerHub(req, res));
    this.cdn = await listen((req, res) => this.answerCdn(req, res));
    this.hubUrl = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
    this.cdnUrl = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const server of [this.hub, this.cdn]) {
      if (!server) continue;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** Requests for file content (hub resolve GETs and CDN GETs). */
  contentRequests(): LoggedRequest[] {
    return this.requests.filter((r) => r.origin === 'cdn' || r.url.includes('/resolve/'));
  }

  private log(origin: 'hub' | 'cdn', req: IncomingMessage): void {
    this.requests.push({
      origin,
      method: req.method ?? '',
      url: req.url ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
  }

  private answerHub(req: IncomingMessage, res: ServerResponse): void {
    this.log('hub', req);
    const url = new URL(req.url ?? '/', 'http://x');
    const api = `/api/models/${this.repo}/`;
    if (url.pathname.startsWith(api)) {
      const [kind, ...rest] = url.pathname.slice(api.length).split('/');
      const commit = this.commitOf(decodeURIComponent(rest.join('/')));
      if (!commit) return json(res, 404, { error: 'Revision Not Found' }, { 'x-error-code': 'RevisionNotFound' });
      if (kind === 'revision') {
        return json(res, 200, {
          _id: 'fake', id: this.repo, sha: commit, private: false, downloads: 0, likes: 0, gated: false,
          lastModified: '2025-01-01T00:00:00.000Z', pipeline_tag: 'automatic-speech-recognition',
        });
      }
      if (kind === 'tree') {
        return json(res, 200, Object.entries(this.files).map(([path, f]) => f.lfs
          ? { type: 'file', path, size: f.content.byteLength, oid: gitBlobSha1(lfsPointer(f.content)),
            lfs: { oid: sha256Hex(f.content), size: f.content.byteLength, pointerSize: lfsPointer(f.content).byteLength } }
          : { type: 'file', path, size: f.content.byteLength, oid: gitBlobSha1(f.content) }));
      }
    }
    const resolvePrefix = `/${this.repo}/resolve/`;
    if (url.pathname.startsWith(resolvePrefix)) {
      const [rev, ...pathParts] = url.pathname.slice(resolvePrefix.length).split('/');
      const commit = this.commitOf(decodeURIComponent(rev));
      const path = pathParts.map(decodeURIComponent).join('/');
      const file = this.files[path];
      if (!commit) return json(res, 404, { error: 'Revision Not Found' }, { 'x-error-code': 'RevisionNotFound' });
      if (!file || this.faults.missing?.has(path)) {
        return json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': commit });
      }
      if (file.lfs) {
        res.writeHead(302, {
          location: `${this.cdnUrl}/blobs/${sha256Hex(file.content)}?path=${encodeURIComponent(path)}`,
          'x-repo-commit': commit,
          'x-linked-etag': `"${this.faults.linkedEtag?.[path] ?? sha256Hex(file.content)}"`,
          'x-linked-size': String(file.content.byteLength),
          etag: `"${gitBlobSha1(lfsPointer(file.content))}"`,
        });
        return void res.end();
      }
      return this.sendContent(req, res, path, file, { 'x-repo-commit': commit, etag: `"${gitBlobSha1(file.content)}"` });
    }
    json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
  }

  private answerCdn(req: IncomingMessage, res: ServerResponse): void {
    this.log('cdn', req);
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.searchParams.get('path') ?? '';
    const file = this.files[path];
    if (!file || url.pathname !== `/blobs/${sha256Hex(file.content)}`) return json(res, 404, { error: 'NoSuchKey' });
    this.sendContent(req, res, path, file, { etag: '"s3-etag"' });
  }

  private sendContent(
    req: IncomingMessage, res: ServerResponse, path: string, file: FakeFile, headers: Record<string, string>,
  ): void {
    const body = this.faults.corrupt?.[path] ?? file.content;
    const total = body.byteLength;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m && !this.faults.ignoreRange ? Number(m[1]) : 0;
    if (start >= total && total > 0) {
      res.writeHead(416, { 'content-range': `bytes */${total}` });
      return void res.end();
    }
    const slice = body.subarray(start);
    res.writeHead(m && !this.faults.ignoreRange ? 206 : 200, {
      ...headers,
      'accept-ranges': 'bytes',
      'content-length': String(slice.byteLength),
      ...(m && !this.faults.ignoreRange ? { 'content-range': `bytes ${start}-${total - 1}/${total}` } : {}),
    });
    const cuts = this.faults.truncate?.[path] ?? 0;
    if (cuts > 0) {
      this.faults.truncate![path] = cuts - 1;
      // Give the client time to read what was sent: a stream that errors drops unread chunks.
      res.write(slice.subarray(0, Math.floor(slice.byteLength / 2)), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    res.end(slice);
  }

  private commitOf(rev: string): string | undefined {
    if (rev === this.commit || Object.values(this.branches).includes(rev)) return rev;
    return this.branches[rev];
  }
}

function lfsPointer(content: Buffer): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256Hex(content)}\nsize ${content.byteLength}\n`);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(handler);
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
