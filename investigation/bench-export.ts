/**
 * Export benchmark (not a test): wall time and peak RSS of `qwen3-onnx export` on a full-size
 * synthetic checkpoint, measured from outside with `/usr/bin/time -v`.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/investigation/bench-export.js 0.6b                 # generates the checkpoint first
 *   node dist/investigation/bench-export.js 1.7b --checkpoint /tmp/ck17 [--keep]
 *
 * The checkpoint (when generated) and the exported model live in a temp dir that is removed
 * at the end unless --keep. Prints one JSON object: wall seconds, peak RSS, bytes written and
 * the write rate they imply (the export is disk-bound on slow disks: compare with
 * `dd if=/dev/zero of=X bs=16M count=190 conv=fsync`).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');

interface Measured { wallSeconds: number; userSeconds: number; systemSeconds: number; peakRssMiB: number }

/** Runs a command under /usr/bin/time -v and parses its report. */
async function timed(args: string[]): Promise<Measured> {
  const { stderr } = await run('/usr/bin/time', ['-v', ...args], { maxBuffer: 64 * 1024 * 1024 });
  const field = (label: string): string => {
    const m = new RegExp(`${label}: (.+)`).exec(stderr);
    if (!m) throw new Error(`no "${label}" in /usr/bin/time output:\n${stderr}`);
    return m[1].trim();
  };
  const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)').split(':').map(Number);
  return {
    wallSeconds: wall.reduce((acc, v) => acc * 60 + v, 0),
    userSeconds: Number(field('User time \\(seconds\\)')),
    systemSeconds: Number(field('System time \\(seconds\\)')),
    peakRssMiB: Math.round(Number(field('Maximum resident set size \\(kbytes\\)')) / 1024),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--');
  const preset = args[0] ?? '0.6b';
  const ckIdx = args.indexOf('--checkpoint');
  const keep = args.includes('--keep');
  const work = await mkdtemp(join(tmpdir(), `bench-export-${preset}-`));
  try {
    let checkpoint = ckIdx >= 0 ? resolve(args[ckIdx + 1]) : '';
    if (!checkpoint) {
      checkpoint = join(work, 'checkpoint');
      process.stderr.write(`generating the ${preset} checkpoint in ${checkpoint}...\n`);
      await run(process.execPath, [CLI, 'fixtures', '--preset', preset, '--output', checkpoint, '--quiet']);
    }
    const output = join(work, 'model');
    const m = await timed([process.execPath, CLI, 'export', '--model', checkpoint, '--output', output, '--quiet']);
    let bytes = 0;
    for (const f of await readdir(output)) bytes += (await stat(join(output, f))).size;
    process.stdout.write(`${JSON.stringify({
      preset, checkpoint, ...m, bytesWritten: bytes,
      impliedWriteMiBps: Math.round(bytes / 2 ** 20 / m.wallSeconds),
    }, null, 2)}\n`);
  } finally {
    if (!keep) await rm(work, { recursive: true, force: true });
  }
}

await main();
