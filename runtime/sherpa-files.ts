import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { graphFileFor, settleModelDir } from '../model-dir/files.js';
import { SHERPA_TOKENIZER_DIR, SHERPA_TOKENIZER_FILES, type SherpaGraphName } from '../model-dir/layout.js';

/**
 * The graph and tokenizer files of a sherpa-onnx layout model directory (shared/SHERPA-ONNX.md)
 * for one variant: `conv_frontend.<variant>.onnx` and `encoder.<variant>.onnx` when quantize wrote
 * them (an encoder recipe), else the float files, as in the split layout; the variant's decoder
 * must exist.
 */

export interface SherpaModelFiles {
  convFrontend: string;
  encoder: string;
  decoder: string;
  /** The folder with vocab.json, merges.txt and tokenizer_config.json. */
  tokenizerDir: string;
}

async function isFile(path: string): Promise<boolean> {
  try { return (await stat(path)).isFile(); } catch { return false; }
}

export async function resolveSherpaFiles(dir: string, variant = 'fp32'): Promise<SherpaModelFiles> {
  settleModelDir(dir);
  // Which graph file a variant loads is the layout's rule (model-dir/files.ts graphFileFor).
  const graph = async (name: SherpaGraphName): Promise<string> => join(dir, await graphFileFor(dir, name, variant, 'sherpa-onnx'));
  const convFrontend = await graph('conv_frontend');
  const encoder = await graph('encoder');
  const decoder = await graph('decoder');
  const tokenizerDir = join(dir, SHERPA_TOKENIZER_DIR);
  for (const f of SHERPA_TOKENIZER_FILES) {
    const name = join(SHERPA_TOKENIZER_DIR, f);
    if (!(await isFile(join(dir, name)))) throw new UserError(`${dir}: ${name} is missing (sherpa-onnx reads the tokenizer from there)`);
  }
  return { convFrontend, encoder, decoder, tokenizerDir };
}
