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
import { timeVerbose } from './time-verbose.js';

const run = promisify(execFile);
const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../cli/main.js');


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
    const m = await timeVerbose([process.execPath, CLI, 'export', '--model', checkpoint, '--output', output, '--quiet']);
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
