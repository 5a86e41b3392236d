/**
 * Where `package` spends its time: the onnxruntime open checks, writing the tar.gz (per
 * compression level), and the verifying re-read, timed separately on a model directory.
 * (not a test)
 *
 *   node dist/investigation/package-stages.js --model-dir DIR [--variant int4] [--level huffman,1] [--out-dir /tmp]
 */
import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { silentProgress } from '../common/progress.js';
import { readTarGz } from '../package/archive-reader.js';
import { parseCompressionLevel, writeTarGz } from '../package/archive-writer.js';
import { assertOrtOpens } from '../package/ort-open.js';
import { GRAPHS, graphFileFor, variantFiles } from '../package/variant-files.js';

const f = new Command('package-stages')
  .requiredOption('--model-dir <dir>').option('--variant <v>', 'variant', 'int4')
  .option('--level <list>', 'compression levels to time', 'huffman,1').option('--out-dir <dir>', 'where the archive is written', '/tmp')
  .parse(process.argv).opts<{ modelDir: string; variant: string; level: string; outDir: string }>();

const lap = (() => { let t = performance.now(); return (): number => { const n = performance.now(); const d = n - t; t = n; return Math.round(d); }; })();
const files = await variantFiles(f.modelDir, f.variant);
let openMs = 0;
lap();
for (const g of GRAPHS) { await assertOrtOpens(join(f.modelDir, await graphFileFor(f.modelDir, g, f.variant))); openMs += lap(); }
const entries = await Promise.all(files.map(async (name) => ({ name, source: { path: join(f.modelDir, name) }, size: (await stat(join(f.modelDir, name))).size })));
const bytes = entries.reduce((n, e) => n + e.size, 0);
for (const level of f.level.split(',').map(parseCompressionLevel)) {
  const out = join(f.outDir, `package-stages-${process.pid}.tar.gz`);
  lap();
  const written = await writeTarGz({ outPath: out, topDir: 'stages', entries, level, progress: silentProgress });
  const writeMs = lap();
  await readTarGz(out, (h) => {
    if (h.type !== 'file') return null;
    const hash = createHash('sha256');
    return { data: (c) => { hash.update(c); }, end: () => { hash.digest(); } };
  });
  const rereadMs = lap();
  await rm(out);
  process.stdout.write(`${JSON.stringify({ variant: f.variant, level, inputBytes: bytes, archiveBytes: written.size, ratio: Number((written.size / bytes).toFixed(3)), ortOpenMs: openMs, writeMs, rereadMs })}\n`);
}
