/**
 * Which files of a model repo the toolkit needs, and whether a directory holds them all.
 * Everything else in a repo (README, images, .bin weights, ONNX exports...) is never fetched.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError } from '../common/errors.js';
import { readJsonWith } from './config.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/** Small files read by export/package when present (tokenizer, processor, templates). */
export const METADATA_FILES: readonly string[] = [
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'chat_template.json',
  'tokenizer_config.json',
  'tokenizer.json',
  'vocab.json',
  'merges.txt',
  // The transformers-native (-hf) repos ship these instead of preprocessor_config/chat_template.json.
  'processor_config.json',
  'chat_template.jinja',
];

const IndexSchema = z.looseObject({ weight_map: z.record(z.string(), z.string()) });

/** The shard files a model.safetensors.index.json names, sorted, each a plain file name. */
export async function readWeightShards(indexPath: string): Promise<string[]> {
  const index = await readJsonWith(IndexSchema, indexPath);
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  for (const shard of shards) {
    if (!/^[\w.-]+\.safetensors$/.test(shard) || shard.startsWith('.')) {
      throw new UserError(`${indexPath}: weight_map names "${shard}", which is not a plain *.safetensors file name`);
    }
  }
  if (shards.length === 0) throw new UserError(`${indexPath}: weight_map is empty`);
  return shards;
}

/**
 * The files of `dir` that must exist for a checkpoint to be usable (config + every weight file),
 * minus those that do: an empty list means complete. Reads the index when there is one.
 */
export async function missingCheckpointFiles(dir: string): Promise<string[]> {
  const missing: string[] = [];
  if (!(await exists(join(dir, CONFIG_FILE)))) missing.push(CONFIG_FILE);
  if (await exists(join(dir, WEIGHTS_INDEX_FILE))) {
    for (const shard of await readWeightShards(join(dir, WEIGHTS_INDEX_FILE))) {
      if (!(await exists(join(dir, shard)))) missing.push(shard);
    }
  } else if (!(await exists(join(dir, WEIGHTS_FILE)))) {
    missing.push(`${WEIGHTS_FILE} (or ${WEIGHTS_INDEX_FILE})`);
  }
  return missing;
}

/** True when the path exists, following symlinks (a dangling snapshot link counts as missing). */
async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
