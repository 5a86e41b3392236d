import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { trackTemp } from '../common/cleanup.js';
import type { Progress } from '../common/progress.js';
import { validateAlpha } from './awq-scales.js';
import { writeSmoothedGraphs, type SmoothReport } from './smooth.js';

/**
 * The `quantize --awq` hook: smoothed float copies of the decoder graphs, written as hidden
 * temp files in the model directory (beside the originals, whose untouched tensors they keep
 * reading) for the quantiser to use as its sources, and removed afterwards.
 *
 * Usage:
 *   const awq = await smoothForQuantize(dir, ['decoder_init', 'decoder_step'], await readAwqStats(stats, dir, alpha));
 *   try { transform(awq.sources.decoder_init, ...) } finally { await awq.cleanup(); }
 */

/**
 * What smoothing needs from `calibrate`'s stats.json: mean |RMSNorm(x)·γ| per channel of each
 * smoothable norm. The caller reads and checks the file (calibrate/stats-file.ts
 * `readAwqStats`), so the quantiser does not depend on the calibrator.
 */
export interface AwqOptions {
  meanAbs: Record<string, number[]>;
  alpha: number;
}

export interface SmoothedSources {
  /** Graph name -> smoothed .onnx path. */
  sources: Record<string, string>;
  report: SmoothReport;
  cleanup(): Promise<void>;
}

export async function smoothForQuantize(
  modelDir: string, graphs: readonly { name: string; file: string }[], awq: AwqOptions, progress?: Progress,
): Promise<SmoothedSources> {
  const dir = resolve(modelDir);
  validateAlpha(awq.alpha);
  // Named like every temp file of this tool (common/debris.ts), so an interrupt removes them and a
  // later run sweeps what a killed one left.
  const tag = `tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const sources: Record<string, string> = {};
  for (const g of graphs) sources[g.name] = join(dir, `.${g.name}.awq.onnx.${tag}`);
  const dataFile = join(dir, `.decoder_weights.awq.data.${tag}`);
  const untrack = [...Object.values(sources), dataFile].map((p) => trackTemp(p));
  const cleanup = async (): Promise<void> => {
    await Promise.all([...Object.values(sources), dataFile].map((p) => rm(p, { force: true })));
    for (const u of untrack) u();
  };
  try {
    const report = await writeSmoothedGraphs({
      graphs: graphs.map((g) => ({ src: join(dir, g.file), dst: sources[g.name] })),
      dataFile, meanAbs: awq.meanAbs, alpha: awq.alpha, progress,
    });
    return { sources, report, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
