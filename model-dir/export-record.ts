import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { LAYOUTS } from './layout.js';
import { sha256FilesInWorker } from '../common/hash-worker.js';
import { EXPORT_RECORD } from './files.js';

/**
 * `export-record.json`, written beside the exported graphs: which checkpoint (hub id, revision,
 * commit, every input file's size and sha256) and which options made this model directory.
 * `package` copies the source into each archive's manifest; nothing a consumer loads reads it.
 */
export const EXPORT_RECORD_FILE = EXPORT_RECORD;

export const ExportRecordSchema = z.object({
  format: z.literal('qwen3-onnx-export/1'),
  tool: z.object({ name: z.literal('qwen3-onnx'), version: z.string() }),
  source: z.object({
    model: z.string(),
    revision: z.string().nullable(),
    commit: z.string().nullable(),
    // Which checkpoint layout was read; records from before the -hf format existed read original.
    format: z.enum(['original', 'hf']).default('original'),
    files: z.array(z.object({ path: z.string(), size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
  }),
  options: z.object({
    allLogits: z.boolean(),
    embedDtype: z.enum(['float16', 'float32']),
    // Records written before `--attention` existed describe standard-op graphs.
    attention: z.enum(['onnx', 'fused']).default('onnx'),
    // Absent: the split layout (records from before the sherpa-onnx layout existed).
    layout: z.enum(LAYOUTS).optional(),
  }),
});
export type ExportRecord = z.infer<typeof ExportRecordSchema>;

/** Checkpoint files that define the model (weights, config, tokenizer, processor). */
const INPUT_FILE = /(\.safetensors|\.safetensors\.index\.json|^config\.json|^vocab\.json|^merges\.txt|^tokenizer(_config)?\.json|^(pre)?processor_config\.json|^chat_template\.(json|jinja))$/;

/**
 * Starts hashing the checkpoint's input files on a worker thread and returns a promise of their
 * records. A file that is a Hugging Face cache link to `blobs/<sha256>` (LFS weights) takes its
 * hash from the blob name, which the download already verified, instead of reading it again.
 */
export async function hashCheckpointFiles(dir: string): Promise<ExportRecord['source']['files']> {
  const names = (await readdir(dir)).filter((n) => INPUT_FILE.test(n)).sort();
  const known = new Map<string, string>();
  const toHash: string[] = [];
  for (const name of names) {
    const p = join(dir, name);
    const l = await lstat(p);
    if (l.isSymbolicLink()) {
      const blob = basename(await readlink(p));
      if (/^[0-9a-f]{64}$/.test(blob)) { known.set(name, blob); continue; }
    }
    toHash.push(name);
  }
  const hashes = await sha256FilesInWorker(toHash.map((n) => join(dir, n)));
  toHash.forEach((n, i) => known.set(n, hashes[i]));
  const out: ExportRecord['source']['files'] = [];
  for (const name of names) out.push({ path: name, size: (await stat(join(dir, name))).size, sha256: known.get(name)! });
  return out;
}
