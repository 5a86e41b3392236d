import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { settleModelDir } from '../model-dir/files.js';
import { SHERPA_TOKENIZER_DIR, SHERPA_TOKENIZER_FILES, sherpaGraphFileName } from '../model-dir/layout.js';

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
  if (!/^[a-z0-9]+$/.test(variant)) throw new UserError(`--variant must be like fp32 or int4, got "${variant}"`);
  settleModelDir(dir);
  const need = async (name: string, why: string): Promise<string> => {
    const path = join(dir, name);
    if (!(await isFile(path))) throw new UserError(`${dir}: ${name} is missing (${why})`);
    return path;
  };
  // The encoder side (conv_frontend, encoder) is quantised only by an encoder recipe: float otherwise.
  const encoderSide = async (graph: 'conv_frontend' | 'encoder'): Promise<string> => {
    const own = join(dir, sherpaGraphFileName(graph, variant));
    return (await isFile(own)) ? own : need(sherpaGraphFileName(graph), 'not a sherpa-onnx layout model directory?');
  };
  const convFrontend = await encoderSide('conv_frontend');
  const encoder = await encoderSide('encoder');
  const decoder = variant === 'fp32'
    ? await need(sherpaGraphFileName('decoder'), 'not a sherpa-onnx layout model directory?')
    : await need(sherpaGraphFileName('decoder', variant), `variant ${variant}: run quantize first`);
  const tokenizerDir = join(dir, SHERPA_TOKENIZER_DIR);
  for (const f of SHERPA_TOKENIZER_FILES) await need(join(SHERPA_TOKENIZER_DIR, f), 'sherpa-onnx reads the tokenizer from there');
  return { convFrontend, encoder, decoder, tokenizerDir };
}
