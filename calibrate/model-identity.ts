import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError, fsError } from '../common/errors.js';
import { CONFIG_FILE, graphFileName, weightsFileName } from '../model-dir/files.js';
import { detectLayout, sherpaGraphFileName, sherpaWeightsFileName } from '../model-dir/layout.js';

/**
 * A stable identity of the float decoder of a model directory, recorded in stats.json so
 * statistics are never applied to a model they were not measured on.
 *
 * Hashing all of decoder_weights.data would cost about 2.5 s per GB on the project box, on
 * every `quantize --awq` of an alpha sweep. Instead the identity is:
 * - sha256 of config.json with the `quantization` record removed (quantize adds that, and the
 *   same stats must keep working across runs), keys sorted: the architecture;
 * - sha256 of decoder_init.onnx and decoder_step.onnx: graph structure, tensor names and every
 *   tensor's offset in the data file;
 * - the data file's size and a sha256 of its first and last MiB plus 64 KiB every 64 MiB:
 *   any other checkpoint of the same architecture differs in those samples (its embedding rows
 *   at the start, its final layers at the end, and every sampled weight in between).
 * That is what the stats can be wrong about. A mismatch never risks a wrong float model anyway:
 * smoothing is exact for any positive scales; stale statistics only make it less useful.
 *
 * A sherpa-onnx layout directory (model-dir/layout.ts) has one decoder graph, decoder.onnx over
 * decoder.data: its identity says `"layout": "sherpa-onnx"` and hashes that graph in
 * decoder_sha256 (the split identity has no layout key, as stats files before the layout had).
 */

const SHA256 = z.string().regex(/^[0-9a-f]{64}$/);

export const SplitModelIdentitySchema = z.strictObject({
  config_sha256: SHA256,
  decoder_init_sha256: SHA256,
  decoder_step_sha256: SHA256,
  decoder_weights_bytes: z.number().int().nonnegative(),
  decoder_weights_sample_sha256: SHA256,
});

export const SherpaModelIdentitySchema = z.strictObject({
  layout: z.literal('sherpa-onnx'),
  config_sha256: SHA256,
  decoder_sha256: SHA256,
  decoder_weights_bytes: z.number().int().nonnegative(),
  decoder_weights_sample_sha256: SHA256,
});

export const ModelIdentitySchema = z.union([SplitModelIdentitySchema, SherpaModelIdentitySchema]);

export type SplitModelIdentity = z.infer<typeof SplitModelIdentitySchema>;
export type SherpaModelIdentity = z.infer<typeof SherpaModelIdentitySchema>;
export type ModelIdentity = SplitModelIdentity | SherpaModelIdentity;

const EDGE_BYTES = 1 << 20;
const SAMPLE_BYTES = 64 << 10;
const SAMPLE_STRIDE = 64 << 20;

export async function modelIdentity(modelDir: string): Promise<ModelIdentity> {
  if (await detectLayout(modelDir) === 'sherpa-onnx') {
    return {
      layout: 'sherpa-onnx',
      config_sha256: await configHash(join(modelDir, CONFIG_FILE)),
      decoder_sha256: await fileHash(join(modelDir, sherpaGraphFileName('decoder'))),
      ...(await sampledHash(join(modelDir, sherpaWeightsFileName('decoder')))),
    };
  }
  return {
    config_sha256: await configHash(join(modelDir, CONFIG_FILE)),
    decoder_init_sha256: await fileHash(join(modelDir, graphFileName('decoder_init'))),
    decoder_step_sha256: await fileHash(join(modelDir, graphFileName('decoder_step'))),
    ...(await sampledHash(join(modelDir, weightsFileName('decoder')))),
  };
}

function layoutOf(identity: ModelIdentity): string {
  return 'layout' in identity ? identity.layout : 'split';
}

/** The first field where two identities differ, as a readable phrase; null when equal. */
export function identityDifference(recorded: ModelIdentity, actual: ModelIdentity): string | null {
  if (layoutOf(recorded) !== layoutOf(actual)) {
    return `the statistics are of a ${layoutOf(recorded)} layout model directory, this is a ${layoutOf(actual)} layout one`;
  }
  const sherpa = 'layout' in actual;
  const data = sherpa ? sherpaWeightsFileName('decoder') : weightsFileName('decoder');
  const fields: [string, string][] = [
    ['config_sha256', CONFIG_FILE],
    ...(sherpa
      ? [['decoder_sha256', sherpaGraphFileName('decoder')] as [string, string]]
      : [['decoder_init_sha256', graphFileName('decoder_init')], ['decoder_step_sha256', graphFileName('decoder_step')]] as [string, string][]),
    ['decoder_weights_bytes', `${data} size`],
    ['decoder_weights_sample_sha256', `${data} contents`],
  ];
  const r = recorded as Record<string, string | number>;
  const a = actual as Record<string, string | number>;
  for (const [field, what] of fields) {
    if (r[field] !== a[field]) return `${what} differs (${short(r[field])} recorded, ${short(a[field])} here)`;
  }
  return null;
}

function short(v: string | number): string {
  return typeof v === 'string' ? v.slice(0, 12) : String(v);
}

async function configHash(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fsError('cannot read', path, err);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UserError(`${path}: expected a JSON object`);
  const { quantization: _ignored, ...rest } = value as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** JSON with object keys sorted at every level. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

async function fileHash(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fsError('cannot read', path, err);
  }
  return createHash('sha256').update(bytes).digest('hex');
}

async function sampledHash(path: string): Promise<Pick<SplitModelIdentity, 'decoder_weights_bytes' | 'decoder_weights_sample_sha256'>> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fsError('cannot read', path, err);
  }
  try {
    const size = (await fh.stat()).size;
    const h = createHash('sha256').update(`${size}:`);
    const ranges: [number, number][] = [[0, Math.min(EDGE_BYTES, size)]];
    for (let at = SAMPLE_STRIDE; at + SAMPLE_BYTES <= size - EDGE_BYTES; at += SAMPLE_STRIDE) ranges.push([at, SAMPLE_BYTES]);
    if (size > EDGE_BYTES) {
      const start = Math.max(EDGE_BYTES, size - EDGE_BYTES);
      ranges.push([start, size - start]);
    }
    const buf = Buffer.alloc(EDGE_BYTES);
    for (const [offset, length] of ranges) {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new UserError(`${path}: unexpected end of file at byte ${offset + done}`);
        done += bytesRead;
      }
      h.update(buf.subarray(0, length));
    }
    return { decoder_weights_bytes: size, decoder_weights_sample_sha256: h.digest('hex') };
  } finally {
    await fh.close();
  }
}
