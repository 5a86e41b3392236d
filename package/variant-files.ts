import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { checkExternalData } from './onnx-check.js';
import { GRAPHS, OPTIONAL_SUPPORT_FILES, REQUIRED_SUPPORT_FILES, graphFileFor, settleModelDir } from '../model-dir/files.js';

// The graph names and the variant rule live in model-dir/files.ts.
export { GRAPHS, graphFileFor } from '../model-dir/files.js';

const SUPPORT_FILES = [...REQUIRED_SUPPORT_FILES, ...OPTIONAL_SUPPORT_FILES];

/** Every file the variant needs (graphs, the data files they reference, config, embeddings, tokenizer), sorted. */
export async function variantFiles(modelDir: string, variant: string): Promise<string[]> {
  settleModelDir(modelDir);
  let listing: string[];
  try { listing = await readdir(modelDir); } catch { throw new UserError(`${modelDir}: not a model directory`); }
  const files = new Set<string>();
  for (const graph of GRAPHS) {
    const file = await graphFileFor(modelDir, graph, variant);
    files.add(file);
    for (const data of await checkExternalData(join(modelDir, file))) files.add(data);
  }
  for (const f of SUPPORT_FILES) {
    if (listing.includes(f)) files.add(f);
    else if (REQUIRED_SUPPORT_FILES.includes(f)) throw new UserError(`${modelDir}: ${f} is missing`);
  }
  if (!listing.includes('tokenizer.json') && !(listing.includes('vocab.json') && listing.includes('merges.txt'))) {
    throw new UserError(`${modelDir}: no tokenizer (need tokenizer.json or vocab.json + merges.txt)`);
  }
  return [...files].sort();
}
