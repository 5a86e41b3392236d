import { Worker } from 'node:worker_threads';

/**
 * sha256 of several files computed on a worker thread, so hashing a multi-GB checkpoint runs on
 * the second core while the main thread keeps building graphs. Resolves in input order.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { createReadStream } = require('node:fs');
(async () => {
  const out = [];
  for (const path of workerData.paths) {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk);
    out.push(h.digest('hex'));
  }
  parentPort.postMessage(out);
})().catch((err) => { throw err; });
`;

export function sha256FilesInWorker(paths: string[]): Promise<string[]> {
  if (paths.length === 0) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { paths } });
    worker.once('message', (hashes: string[]) => resolve(hashes));
    worker.once('error', reject);
    worker.once('exit', (code) => { if (code !== 0) reject(new Error(`hash worker exited with code ${code}`)); });
  });
}
