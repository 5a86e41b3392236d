import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { checkExternalData } from './onnx-check.js';
import { alignerVariantFiles } from './aligner-files.js';
import { modelDirKind } from '../model-dir/aligner.js';
import { CONFIG_FILE, GRAPHS, OPTIONAL_SUPPORT_FILES, REQUIRED_SUPPORT_FILES, graphFileFor, settleModelDir } from '../model-dir/files.js';
import { SHERPA_TOKENIZER_DIR, SHERPA_TOKENIZER_FILES, detectLayout, layoutGraphs } from '../model-dir/layout.js';

// The graph names and the variant rule live in model-dir/files.ts.
export { GRAPHS, graphFileFor } from '../model-dir/files.js';

const SUPPORT_FILES = [...REQUIRED_SUPPORT_FILES, ...OPTIONAL_SUPPORT_FILES];

/**
 * Every file the variant needs (graphs, the data files they reference, config, embeddings, tokenizer),
 * sorted; paths relative to `modelDir` (the sherpa-onnx layout's tokenizer files as `tokenizer/<name>`).
 */
export async function variantFiles(modelDir: string, variant: string): Promise<string[]> {
  if ((await modelDirKind(modelDir).catch(() => 'asr')) === 'forced_aligner') return alignerVariantFiles(modelDir, variant);
  settleModelDir(modelDir);
  let listing: string[];
  try { listing = await readdir(modelDir); } catch { throw new UserError(`${modelDir}: not a model directory`); }
  const layout = await detectLayout(modelDir);
  const files = new Set<string>();
  for (const graph of layoutGraphs(layout)) {
    const file = await graphFileFor(modelDir, graph, variant, layout);
    files.add(file);
    for (const data of await checkExternalData(join(modelDir, file))) files.add(data);
  }
  if (layout === 'sherpa-onnx') return [...files, ...await sherpaSupportFiles(modelDir, listing)].sort();
  for (const f of SUPPORT_FILES) {
    if (listing.includes(f)) files.add(f);
    else if (REQUIRED_SUPPORT_FILES.includes(f)) throw new UserError(`${modelDir}: ${f} is missing`);
  }
  if (!listing.includes('tokenizer.json') && !(listing.includes('vocab.json') && listing.includes('merges.txt'))) {
    throw new UserError(`${modelDir}: no tokenizer (need tokenizer.json or vocab.json + merges.txt)`);
  }
  return [...files].sort();
}

/** config.json and the tokenizer/ folder sherpa-onnx reads (every file of it required). */
async function sherpaSupportFiles(modelDir: string, listing: readonly string[]): Promise<string[]> {
  if (!listing.includes(CONFIG_FILE)) throw new UserError(`${modelDir}: ${CONFIG_FILE} is missing`);
  let inside: string[];
  try { inside = await readdir(join(modelDir, SHERPA_TOKENIZER_DIR)); } catch {
    throw new UserError(`${join(modelDir, SHERPA_TOKENIZER_DIR)}: missing (the sherpa-onnx layout needs ${SHERPA_TOKENIZER_FILES.join(', ')} there)`);
  }
  for (const f of SHERPA_TOKENIZER_FILES) {
    if (!inside.includes(f)) throw new UserError(`${join(modelDir, SHERPA_TOKENIZER_DIR, f)}: missing`);
  }
  return [CONFIG_FILE, ...SHERPA_TOKENIZER_FILES.map((f) => `${SHERPA_TOKENIZER_DIR}/${f}`)];
}

