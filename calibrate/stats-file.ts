import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../common/atomic.js';
import { UserError, fsError } from '../common/errors.js';
import { parseJsonWith } from '../checkpoint/config.js';
import { ModelIdentitySchema, identityDifference, modelIdentity, type ModelIdentity } from './model-identity.js';
import { validateAlpha } from '../quantize/awq-scales.js';

/**
 * stats.json: what `calibrate` measured, independent of any smoothing strength, so an alpha
 * sweep re-reads it instead of re-running the model.
 *
 * {
 *   "format": "qwen3-onnx-activation-stats", "version": 1,
 *   "model": { config_sha256, decoder_init_sha256, ... },          (model-identity.ts; a sherpa-onnx
 *            layout directory's: { "layout": "sherpa-onnx", config_sha256, decoder_sha256, ... })
 *   "calibration": { "max_new_tokens": 64, "prefill_positions": .., "decode_positions": ..,
 *                    "files": [{ "name", "sha256", "audio_tokens", "prefill_positions", "decode_positions" }] },
 *   "norms": { "<norm weight name>": { "linears": [weight names], "positions": n, "mean_abs": [C numbers] } }
 * }
 *
 * mean_abs is the mean |activation| per channel of the norm output over every position that
 * went through it (prefill and decode alike; the final norm only sees the positions whose
 * logits are computed). Values are float32-rounded; keys are sorted, so the same run gives
 * the same bytes.
 */

export const STATS_FORMAT = 'qwen3-onnx-activation-stats';
export const STATS_VERSION = 1;

const NormStatsSchema = z.strictObject({
  linears: z.array(z.string().min(1)).min(1),
  positions: z.number().int().positive(),
  mean_abs: z.array(z.number().nonnegative()).min(1),
});

const FileRecordSchema = z.strictObject({
  name: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  audio_tokens: z.number().int().nonnegative(),
  prefill_positions: z.number().int().nonnegative(),
  decode_positions: z.number().int().nonnegative(),
});

export const StatsFileSchema = z.strictObject({
  format: z.literal(STATS_FORMAT),
  version: z.literal(STATS_VERSION),
  model: ModelIdentitySchema,
  calibration: z.strictObject({
    max_new_tokens: z.number().int().nonnegative(),
    prefill_positions: z.number().int().nonnegative(),
    decode_positions: z.number().int().nonnegative(),
    files: z.array(FileRecordSchema),
  }),
  norms: z.record(z.string(), NormStatsSchema).refine((r) => Object.keys(r).length > 0, 'no norms recorded'),
});

export type StatsFile = z.infer<typeof StatsFileSchema>;
export type NormStats = z.infer<typeof NormStatsSchema>;
export type CalibrationFileRecord = z.infer<typeof FileRecordSchema>;

/** Serialises with sorted keys and float32-rounded means (stable bytes). */
export function statsToJson(stats: StatsFile): string {
  const norms: Record<string, NormStats> = {};
  for (const key of Object.keys(stats.norms).sort()) {
    const n = stats.norms[key];
    norms[key] = { linears: [...n.linears].sort(), positions: n.positions, mean_abs: n.mean_abs.map((v) => Math.fround(v)) };
  }
  const ordered: StatsFile = {
    format: stats.format,
    version: stats.version,
    model: sortKeys(stats.model),
    calibration: {
      max_new_tokens: stats.calibration.max_new_tokens,
      prefill_positions: stats.calibration.prefill_positions,
      decode_positions: stats.calibration.decode_positions,
      files: stats.calibration.files.map((f) => sortKeys(f)),
    },
    norms,
  };
  check(ordered, '(stats to write)');
  // One number per line would triple the size; keep each mean_abs array on one line.
  return `${JSON.stringify(ordered, (k, v) => (k === 'mean_abs' ? `@@${JSON.stringify(v)}@@` : v), 2)
    .replace(/"@@(\[[^"]*\])@@"/g, '$1')}\n`;
}

export async function writeStatsFile(path: string, stats: StatsFile): Promise<void> {
  await writeFileAtomic(resolve(path), statsToJson(stats));
}

export async function readStatsFile(path: string): Promise<StatsFile> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw fsError('cannot read', file, err);
  }
  const stats = parseJsonWith(StatsFileSchema, text, file);
  check(stats, file);
  return stats;
}

/** Reads stats.json and refuses it unless it was measured on the model in `modelDir`. */
export async function readStatsForModel(path: string, modelDir: string): Promise<StatsFile> {
  const stats = await readStatsFile(path);
  const actual: ModelIdentity = await modelIdentity(modelDir);
  const diff = identityDifference(stats.model, actual);
  if (diff) {
    throw new UserError(`${resolve(path)}: activation statistics are from a different model than ${resolve(modelDir)}: ${diff}; run \`qwen3-onnx calibrate --model-dir ${modelDir}\` for this model`);
  }
  return stats;
}

/**
 * `quantize --awq`'s input from a stats file: read, checked against `modelDir` (the statistics
 * must be of this very model), reduced to what smoothing uses.
 */
export async function readAwqStats(path: string, modelDir: string, alpha: number): Promise<{ meanAbs: Record<string, number[]>; alpha: number }> {
  validateAlpha(alpha); // the cheap check first
  const stats = await readStatsForModel(path, modelDir);
  return { meanAbs: Object.fromEntries(Object.entries(stats.norms).map(([k, v]) => [k, v.mean_abs])), alpha };
}

/** Consistency a schema cannot express: array lengths and finiteness. */
function check(stats: StatsFile, file: string): void {
  for (const [key, n] of Object.entries(stats.norms)) {
    if (!n.mean_abs.every(Number.isFinite)) throw new UserError(`${file}: norms.${key}.mean_abs has a non-finite value`);
  }
}

function sortKeys<T extends object>(o: T): T {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, (o as Record<string, unknown>)[k]])) as T;
}
