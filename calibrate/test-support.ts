import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { cp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cachedDir, tinyCheckpointVariantDir, type TinyVariant } from '../fixtures/test-support.js';

/**
 * Exported tiny model directories for the calibrate tests and the AWQ sweep, cached like the
 * fixtures (fixtures/test-support.ts): the name hashes graph-builder/ sources so a builder change
 * gives a fresh export.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const memo = new Map<string, Promise<string>>();

/** The tiny checkpoint variant `v` exported to a float32 model directory (shared, read-only). */
export function tinyExportedModelDir(v: TinyVariant = {}): Promise<string> {
  const name = [
    'calib-model', `seed${v.seed ?? 0}`, v.outlierChannels ? `outliers${v.outlierChannels}` : '', graphBuilderVersion(),
  ].filter(Boolean).join('-');
  let p = memo.get(name);
  if (!p) {
    p = cachedDir(name, async (dir) => {
      const { exportModel } = await import('../graph-builder/export.js');
      await exportModel({ model: await tinyCheckpointVariantDir(v), output: dir });
    });
    memo.set(name, p);
    p.catch(() => memo.delete(name));
  }
  return p;
}

/** A private, writable copy of a model directory; `cleanup()` removes it. */
export async function copyModelDir(src: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const root = join(tmpdir(), `qwen3-onnx-calib-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(root, { recursive: true });
  const dir = join(root, 'model');
  await cp(src, dir, { recursive: true });
  return { dir, cleanup: () => rm(root, { recursive: true, force: true }) };
}

function graphBuilderVersion(): string {
  const ext = extname(fileURLToPath(import.meta.url));
  const dir = join(HERE, '..', 'graph-builder');
  const h = createHash('sha256');
  const sources = readdirSync(dir).filter((f) => f.endsWith(ext) && !f.endsWith(`.test${ext}`) && !f.endsWith(`.d${ext}`)).sort();
  for (const f of sources) h.update(f).update('\0').update(readFileSync(join(dir, f))).update('\0');
  return h.digest('hex').slice(0, 12);
}
