import { dirname, isAbsolute, relative } from 'node:path';
import { UserError } from '../common/errors.js';
import { checkExternalRanges, isExternal, loadModel, tensorBytes } from '../common/onnx/index.js';

/**
 * Parses an ONNX file and checks that every external-data reference stays inside the model
 * directory and inside its file. Returns the data files it uses (relative names), sorted.
 */
export async function checkExternalData(onnxPath: string): Promise<string[]> {
  const loaded = await loadModel(onnxPath);
  await checkExternalRanges(loaded);
  const dir = dirname(loaded.path);
  const files = new Set<string>();
  for (const t of loaded.model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const src = tensorBytes(t, loaded.path);
    if (src.kind !== 'external') continue;
    const rel = relative(dir, src.file);
    if (rel.startsWith('..') || isAbsolute(rel)) throw new UserError(`${loaded.path}: tensor ${t.name} points outside the model directory (${rel})`);
    files.add(rel);
  }
  return [...files].sort();
}
