/**
 * `export`: a Qwen3-ASR checkpoint -> the contract's float32 model directory
 * (encoder.onnx + encoder_weights.data, decoder_init.onnx, decoder_step.onnx,
 * decoder_weights.data, embed_tokens.bin, config.json, tokenizer/processor files).
 *
 * Usage:
 *   const result = await exportModel({ model: 'Qwen/Qwen3-ASR-0.6B', output: 'out/qwen3-asr-0.6b' });
 *
 * The directory is built in a temp dir beside OUTPUT and renamed into place at the end, so a
 * failed or interrupted run leaves nothing under OUTPUT. Tensors stream one at a time (the
 * embedding in row blocks), so peak memory is about the largest tensor plus overhead.
 * Same checkpoint + options => byte-identical files.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { AtomicFileWriter, writeFileAtomic } from '../common/atomic.js';
import { assertNotLocked } from '../common/dir-lock.js';
import { assertOutputApart, assertWritableDir } from '../common/output-paths.js';
import { StagedDir } from '../common/staging.js';
import { hubCacheDir } from '../checkpoint/hub-cache.js';
import { CONFIG_FILE, EMBED_TOKENS_BIN, assertToolWrittenDir, graphFileName, weightsFileName } from '../model-dir/files.js';
import { SPECIAL_TOKENS, outputConfig, type EmbedDtype } from '../model-dir/config.js';
import { fsError, UserError } from '../common/errors.js';
import { f32ToF16Bytes } from '../common/float16.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { type CheckpointConfig, type ModelDims } from '../checkpoint/config.js';
import { OutputConfigSchema, type OutputConfig } from '../model-dir/config.js';
import { resolveModelSource } from '../checkpoint/model-source.js';
import { openCheckpoint } from '../checkpoint/open-checkpoint.js';
import { readSupportFiles, type SupportFile } from '../checkpoint/support-files.js';
import type { TensorSource } from '../checkpoint/tensor-source.js';
import { EXPORT_RECORD_FILE, hashCheckpointFiles, type ExportRecord } from '../model-dir/export-record.js';
import { TOOL_VERSION } from '../common/version.js';
import { writeAlignerModelFiles } from './aligner-export.js';
import { buildEncoder } from './encoder.js';
import { buildDecoderInit, buildDecoderStep, decoderTensorCount, EMBED_TOKENS, type DecoderAttention } from './decoder.js';
import { writeModel } from './model.js';
import { sherpaConfig, writeSherpaGraphs, writeSherpaTokenizer } from './sherpa-export.js';
import type { Layout } from '../model-dir/layout.js';
import { WeightStore } from './weight-store.js';
import { ROW_BLOCK } from './weights.js';

export type { EmbedDtype };

export interface ExportOptions {
  /** Checkpoint directory or hub repo id. */
  model: string;
  revision?: string;
  output: string;
  /** decoder_init returns logits for every position. */
  allLogits?: boolean;
  /** Element type of embed_tokens.bin (default float16). */
  embedDtype?: EmbedDtype;
  /**
   * Decoder self-attention: 'onnx' (default, standard ops) or 'fused' (onnxruntime's
   * com.microsoft GroupQueryAttention + RotaryEmbedding; same contract I/O, onnxruntime only).
   */
  attention?: DecoderAttention;
  /**
   * 'split' (default, shared/CONTRACT.md) or 'sherpa-onnx' (conv_frontend.onnx, encoder.onnx,
   * decoder.onnx, tokenizer/: shared/SHERPA-ONNX.md; sherpa-export.ts).
   */
  layout?: Layout;
  /** Replace an existing OUTPUT directory (swapped in atomically). */
  overwrite?: boolean;
  progress?: Progress;
}

export interface ExportedFile { name: string; bytes: number }

export interface ExportResult {
  output: string;
  /** Where the checkpoint was read from (a hub cache snapshot for repo ids). */
  checkpoint: string;
  commit?: string;
  allLogits: boolean;
  embedDtype: EmbedDtype;
  attention: DecoderAttention;
  layout: Layout;
  /** Every file written, sorted by name. */
  files: ExportedFile[];
}


/** Checkpoint files copied verbatim when present (tokenizer, processor, chat template); -hf ones are derived. */
export { COPIED_SUPPORT_FILES as COPIED_FILES } from '../checkpoint/support-files.js';


export async function exportModel(opts: ExportOptions): Promise<ExportResult> {
  const progress = opts.progress ?? silentProgress;
  const embedDtype = opts.embedDtype ?? 'float16';
  const attention = opts.attention ?? 'onnx';
  const layout = opts.layout ?? 'split';
  if (layout === 'sherpa-onnx' && attention !== 'onnx') {
    throw new UserError(`--attention ${attention}: the sherpa-onnx layout's decoder uses standard ONNX attention over its cache buffers (drop --attention or use --layout split)`);
  }
  const output = resolve(opts.output);
  // Cheap checks first: where the output goes, before any download or graph work.
  await assertOutputApart(output, '--output', [{ path: await localModelDirOrHubCache(opts.model), flag: '--model' }]);
  await checkOutput(output, opts.overwrite ?? false);
  const staged = await StagedDir.create(output);
  const tmp = staged.path;
  let source: Awaited<ReturnType<typeof resolveModelSource>>;
  let ckpt: Awaited<ReturnType<typeof openCheckpoint>>;
  try {
    source = await resolveModelSource(opts.model, { revision: opts.revision, progress });
    await assertOutputApart(output, '--output', [{ path: source.dir, flag: '--model' }]);
    ckpt = await openCheckpoint(source.dir);
  } catch (err) {
    await staged.abort();
    throw err;
  }
  // Hash the inputs on a worker thread while the graphs are built on this one.
  const inputHashes = hashCheckpointFiles(source.dir);
  inputHashes.catch(() => { /* awaited below; avoid an unhandled rejection if the export fails first */ });
  try {
    // Tokenizer files parsed and checked before the expensive work (and derived for -hf checkpoints).
    const supportFiles = await readSupportFiles(source.dir, supportFileChecks(ckpt.dims));
    if (ckpt.dims.aligner) {
      await writeAlignerModelFiles(ckpt, tmp, { layout, attention, allLogits: opts.allLogits, progress });
      await writeSupportFiles(supportFiles, tmp);
    } else if (layout === 'sherpa-onnx') {
      await writeSherpaGraphs(ckpt.tensors, ckpt.dims, tmp, progress);
      await writeSherpaTokenizer(supportFiles, tmp);
      await writeFileAtomic(join(tmp, CONFIG_FILE), `${JSON.stringify(sherpaConfig(ckpt.config, ckpt.dims), null, 2)}\n`);
    } else {
      await buildEncoder({ tensors: ckpt.tensors, dims: ckpt.dims, outputDir: tmp, progress });
      await writeDecoderFiles(ckpt.tensors, ckpt.dims, tmp, { allLogits: opts.allLogits ?? false, attention, progress });
      await writeEmbedTable(ckpt.tensors, ckpt.dims, join(tmp, EMBED_TOKENS_BIN), embedDtype, progress);
      await writeFileAtomic(join(tmp, CONFIG_FILE), `${JSON.stringify(outputConfig(ckpt.config, ckpt.dims, embedDtype), null, 2)}\n`);
      await writeSupportFiles(supportFiles, tmp);
    }
    const record: ExportRecord = {
      format: 'qwen3-onnx-export/1',
      tool: { name: 'qwen3-onnx', version: TOOL_VERSION },
      source: {
        model: source.repo ?? basename(source.dir), revision: opts.revision ?? null, commit: source.commit ?? null,
        format: ckpt.format, files: await inputHashes,
      },
      options: { allLogits: opts.allLogits ?? false, embedDtype, attention, ...(layout === 'split' ? {} : { layout }) },
    };
    await writeFileAtomic(join(tmp, EXPORT_RECORD_FILE), `${JSON.stringify(record, null, 2)}\n`);
    const files = await listFiles(tmp);
    await staged.commit();
    progress.finish();
    return {
      output, checkpoint: source.dir, ...(source.commit ? { commit: source.commit } : {}),
      allLogits: opts.allLogits ?? false, embedDtype, attention, layout, files,
    };
  } catch (err) {
    progress.finish();
    await staged.abort();
    throw err;
  } finally {
    await ckpt.tensors.close();
  }
}

/** decoder_init.onnx + decoder_step.onnx sharing decoder_weights.data (each weight stored once). */
export async function writeDecoderFiles(
  src: TensorSource, dims: ModelDims, dir: string,
  opts: { allLogits?: boolean; attention?: DecoderAttention; progress?: Progress } = {},
): Promise<void> {
  const progress = opts.progress ?? silentProgress;
  const total = decoderTensorCount(dims, src);
  let done = 0;
  const store = await WeightStore.create(join(dir, weightsFileName('decoder')), {
    onStored: () => { done += 1; progress.update('decoder weights', done, total); },
  });
  try {
    const init = await buildDecoderInit(src, dims, store, { allLogits: opts.allLogits, attention: opts.attention });
    const step = await buildDecoderStep(src, dims, store, { attention: opts.attention });
    await store.commit();
    await writeModel(join(dir, graphFileName('decoder_init')), init);
    await writeModel(join(dir, graphFileName('decoder_step')), step);
  } catch (err) {
    await store.abort();
    throw err;
  }
  progress.finish();
}

/** embed_tokens.bin: the raw row-major [V, H] embedding, converted block by block. */
export async function writeEmbedTable(
  src: TensorSource, dims: ModelDims, path: string, dtype: EmbedDtype, progress: Progress = silentProgress,
): Promise<void> {
  const rows = dims.text.vocab;
  const w = await AtomicFileWriter.create(path);
  try {
    for (let r = 0; r < rows; r += ROW_BLOCK) {
      const block = await src.readFloat32Rows(EMBED_TOKENS, r, Math.min(ROW_BLOCK, rows - r));
      await w.write(dtype === 'float16' ? f32ToF16Bytes(block) : new Uint8Array(block.buffer, block.byteOffset, block.byteLength));
      progress.update(EMBED_TOKENS_BIN, Math.min(r + ROW_BLOCK, rows), rows);
    }
    await w.commit();
  } catch (err) {
    await w.abort();
    throw err;
  }
  progress.finish();
}


/** What the shipped tokenizer must agree with: the embedding rows and the ids config.json and the prompt use. */
function supportFileChecks(dims: ModelDims): Parameters<typeof readSupportFiles>[1] {
  return {
    vocabSize: dims.text.vocab,
    expectedTokens: [
      { id: SPECIAL_TOKENS.endOfText, content: '<|endoftext|>', what: 'end of text' },
      { id: SPECIAL_TOKENS.imStart, content: '<|im_start|>', what: 'im_start' },
      { id: SPECIAL_TOKENS.imEnd, content: '<|im_end|>', what: 'im_end' },
      { id: dims.tokens.audioStart, content: '<|audio_start|>', what: 'config.json audio_start_token_id' },
      { id: dims.tokens.audioEnd, content: '<|audio_end|>', what: 'config.json audio_end_token_id' },
      { id: dims.tokens.audio, content: '<|audio_pad|>', what: 'config.json audio_token_id' },
      { id: SPECIAL_TOKENS.asrText, content: '<asr_text>', what: 'asr_text' },
      ...(dims.aligner ? [{ id: dims.aligner.timestampTokenId, content: '<timestamp>', what: 'config.json timestamp_token_id' }] : []),
    ],
  };
}

/** The checkpoint's tokenizer/processor files (copied or derived, see checkpoint/support-files.ts). */
async function writeSupportFiles(files: readonly SupportFile[], to: string): Promise<void> {
  for (const f of files) await writeFileAtomic(join(to, f.name), f.bytes);
}

async function listFiles(dir: string, prefix = ''): Promise<ExportedFile[]> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  const out: ExportedFile[] = [];
  for (const name of names) {
    const s = await stat(join(dir, name));
    if (s.isDirectory()) out.push(...await listFiles(join(dir, name), `${prefix}${name}/`));
    else out.push({ name: `${prefix}${name}`, bytes: s.size });
  }
  return out;
}

/**
 * Refuses to clobber an existing non-empty OUTPUT unless asked to, and even then replaces only a
 * model directory qwen3-onnx wrote (export-record.json, nothing foreign) that no live run is writing.
 */
async function checkOutput(output: string, overwrite: boolean): Promise<void> {
  let entries: string[];
  try {
    const s = await stat(output);
    if (!s.isDirectory()) throw new UserError(`--output ${output}: exists and is not a directory`);
    entries = await readdir(output);
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      await assertWritableDir(output, '--output');
      return;
    }
    throw fsError('cannot read', output, err);
  }
  if (entries.length > 0 && !overwrite) {
    throw new UserError(`--output ${output}: directory exists and is not empty (pass --overwrite to replace it)`);
  }
  await assertWritableDir(dirname(output), '--output');
  if (entries.length > 0) {
    await assertToolWrittenDir(output, '--output');
    await assertNotLocked(output);
  }
}

/** What `--model` will read, as far as is known before resolving it: a local directory, else the hub cache. */
async function localModelDirOrHubCache(model: string): Promise<string> {
  try {
    if ((await stat(model)).isDirectory()) return resolve(model);
  } catch { /* a hub id */ }
  return hubCacheDir();
}
