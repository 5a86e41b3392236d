import { readFile, stat } from 'node:fs/promises';
import { dirname, join, normalize, isAbsolute } from 'node:path';
import { UserError, fsError } from '../common/errors.js';
import { onnx } from '../graph-builder/onnx-types.js';

export interface ExternalRef { tensor: string; location: string; offset: number; length: number }

/** Every external-data reference of an ONNX file (graph initializers and Constant nodes' tensors). */
export async function readExternalRefs(onnxPath: string): Promise<ExternalRef[]> {
  let bytes: Buffer;
  try { bytes = await readFile(onnxPath); } catch (err) { throw fsError('cannot read', onnxPath, err); }
  let model: ReturnType<typeof onnx.ModelProto.decode>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new UserError(`${onnxPath}: not a valid ONNX model (${(err as Error).message})`);
  }
  if (!model.graph) throw new UserError(`${onnxPath}: not a valid ONNX model (no graph)`);
  const refs: ExternalRef[] = [];
  for (const t of model.graph.initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    const location = kv.get('location');
    if (!location) throw new UserError(`${onnxPath}: tensor ${t.name} is external but names no location`);
    refs.push({
      tensor: t.name ?? '',
      location,
      offset: Number(kv.get('offset') ?? 0),
      length: Number(kv.get('length') ?? NaN),
    });
  }
  return refs;
}

/**
 * Checks that every external-data reference of `onnxPath` stays inside the directory and inside
 * its file. Returns the data files it uses (relative names), sorted.
 */
export async function checkExternalData(onnxPath: string, displayName = onnxPath): Promise<string[]> {
  const refs = await readExternalRefs(onnxPath);
  const dir = dirname(onnxPath);
  const sizes = new Map<string, number>();
  for (const ref of refs) {
    const rel = normalize(ref.location);
    if (isAbsolute(rel) || rel.startsWith('..')) throw new UserError(`${displayName}: tensor ${ref.tensor} points outside the model directory (${ref.location})`);
    if (!sizes.has(rel)) {
      try { sizes.set(rel, (await stat(join(dir, rel))).size); } catch { throw new UserError(`${displayName}: tensor ${ref.tensor} needs ${rel}, which is missing`); }
    }
    const size = sizes.get(rel)!;
    if (!Number.isFinite(ref.length) || ref.offset < 0 || ref.offset + ref.length > size) {
      throw new UserError(`${displayName}: tensor ${ref.tensor} lies outside ${rel} (offset ${ref.offset} + ${ref.length} > ${size} bytes)`);
    }
  }
  return [...sizes.keys()].sort();
}
