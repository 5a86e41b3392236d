import { execFile } from 'node:child_process';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RSS_FILE_ENV } from './rss-reporter.js';

/**
 * Runs one CLI stage as a child process and reads its wall time and peak RSS from outside.
 *
 * Peak RSS comes from one of two places (the result names which):
 * - `time`: GNU `/usr/bin/time -f %M` (max RSS of the child in KiB, from wait4's rusage);
 * - `resource-usage`: where /usr/bin/time is absent, the child is started with
 *   `node --import rss-reporter.js`, which writes `process.resourceUsage().maxRSS` (KiB) to a
 *   file on exit. Both include worker threads (same process); neither sees grandchildren that
 *   the child does not wait for.
 */

export type RssMethod = 'time' | 'resource-usage';

export interface ChildMeasure {
  wallSeconds: number;
  peakRssMiB: number;
  rssMethod: RssMethod;
  stdout: string;
}

const GNU_TIME = '/usr/bin/time';

export async function defaultRssMethod(): Promise<RssMethod> {
  try {
    await access(GNU_TIME);
    return 'time';
  } catch {
    return 'resource-usage';
  }
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(file, args, { env, maxBuffer: 512 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err) {
        const tail = stderr.trim().split('\n').slice(-8).join('\n');
        reject(new Error(`${[file, ...args].join(' ')} failed (${err.code ?? err.signal ?? err.message}):\n${tail}`));
      } else {
        resolvePromise({ stdout, stderr });
      }
    });
  });
}

/**
 * `node <script> <args>` measured. `reporter` is the compiled rss-reporter.js (only used by the
 * resource-usage method).
 */
export async function runMeasured(
  script: string, args: string[], opts: { method: RssMethod; reporter: string },
): Promise<ChildMeasure> {
  const scratch = await mkdtemp(join(tmpdir(), 'bench-rss-'));
  const rssFile = join(scratch, 'rss');
  try {
    const t0 = performance.now();
    let stdout: string;
    let peakKiB: number;
    if (opts.method === 'time') {
      ({ stdout } = await run(GNU_TIME, ['-f', '%M', '-o', rssFile, process.execPath, script, ...args], process.env));
      peakKiB = Number((await readFile(rssFile, 'utf8')).trim().split('\n').pop());
    } else {
      ({ stdout } = await run(process.execPath, ['--import', pathToFileURL(opts.reporter).href, script, ...args],
        { ...process.env, [RSS_FILE_ENV]: rssFile }));
      peakKiB = Number((await readFile(rssFile, 'utf8')).trim());
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    if (!Number.isFinite(peakKiB) || peakKiB <= 0) throw new Error(`no peak RSS reported for ${script} ${args.join(' ')}`);
    return { wallSeconds, peakRssMiB: Math.round((peakKiB / 1024) * 10) / 10, rssMethod: opts.method, stdout };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
