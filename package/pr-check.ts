/**
 * `npm run release:pr-check`: the release pipeline's pull-request job, end to end on the synthetic
 * tiny checkpoint: fixtures -> build (export, fuse, quantize, compare, package) twice -> the two
 * builds' archives must be byte-identical -> verify-package -> publish --dry-run.
 * Each step runs the real CLI, exactly as the workflow's release steps do.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');

function run(args: string[]): string {
  process.stderr.write(`$ qwen3-onnx ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`qwen3-onnx ${args[0]} failed with exit code ${r.status}`);
  return r.stdout;
}

async function archives(dist: string): Promise<string[]> {
  return (await readdir(dist)).filter((f) => f.endsWith('.tar.gz')).sort();
}

export async function prCheck(workDir: string): Promise<{ archives: string[] }> {
  const checkpoint = join(workDir, 'checkpoint');
  run(['fixtures', '--preset', 'tiny', '--seed', '0', '--output', checkpoint, '--quiet']);
  // Thresholds for a random-weights model: its logits are far flatter than a trained model's,
  // so int4 rounding flips more near-ties; the real builds keep the defaults (0.9 / 0.99). The
  // whole-model int4 (encoder too) measured cosine 0.949 on the built-in clip; a broken layout is near 0.
  const buildArgs = ['--model', checkpoint, '--size-label', 'tiny', '--min-top1', '0.5', '--min-cosine', '0.9', '--compare-max-tokens', '8', '--quiet'];
  run(['build', ...buildArgs, '--output', join(workDir, 'build-a')]);
  run(['build', ...buildArgs, '--output', join(workDir, 'build-b')]);
  const distA = join(workDir, 'build-a', 'dist');
  const distB = join(workDir, 'build-b', 'dist');
  const names = await archives(distA);
  if (names.length === 0) throw new Error('build wrote no archive');
  for (const f of [...names, 'SHA256SUMS', ...names.map((n) => n.replace(/\.tar\.gz$/, '.manifest.json'))]) {
    const [a, b] = await Promise.all([readFile(join(distA, f)), readFile(join(distB, f))]);
    if (!a.equals(b)) throw new Error(`two builds of the same checkpoint differ in ${f}`);
  }
  for (const n of names) run(['verify-package', join(distA, n), '--quiet']);
  run(['publish', '--dist', distA, '--repo', 'qwen3-onnx/pr-check', '--dry-run', '--quiet']);
  return { archives: names };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const work = await mkdtemp(join(tmpdir(), 'qwen3-onnx-pr-check-'));
  try {
    const { archives: names } = await prCheck(work);
    process.stdout.write(`pr-check OK: ${names.join(', ')} built twice byte-identically, verified, publish plan checked\n`);
  } catch (err) {
    process.stderr.write(`pr-check FAILED: ${(err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
