import { open, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError, fsError } from '../common/errors.js';
import { f16BytesToF32 } from '../common/float16.js';
import type { OutputConfig } from '../model-dir/config.js';
import { Tokenizer } from './tokenizer.js';
import { EMBED_TOKENS_BIN, graphFileFor, settleModelDir } from '../model-dir/files.js';
import { readModelConfig } from '../model-dir/config.js';
import { greedyDecode, runEncoder, type DecodeOptions, type GreedyResult } from './decode.js';
import type { LogMel } from './mel.js';
import type { Prompt } from './prompt.js';
import type { EncodedAudio, SpeechModel } from './speech-model.js';

/**
 * A loaded model directory (CONTRACT.md "Output"): config.json, the three onnxruntime
 * sessions of one variant, the tokenizer and the embed_tokens.bin row reader.
 */

/** fp32 reads the unsuffixed files; any other variant `name.<variant>.onnx`, falling back to unsuffixed. */
export type Variant = string;
export { VARIANTS } from '../model-dir/files.js';

export interface ModelFiles {
  encoder: string;
  decoderInit: string;
  decoderStep: string;
  embedTokens: string;
}

export interface LoadOptions {
  variant?: Variant;
  /** onnxruntime intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
  /**
   * Let onnxruntime pre-pack constant weights for its kernels (default true). Packing is what
   * makes MatMulNBits fast (int4 decode ~30x slower without it), but for float MatMuls it keeps
   * a packed copy beside every weight: off, a 0.6B fp32 model loads in 0.6 s instead of 7 s with
   * 2.7 instead of 6.2 GB resident, at ~25 % slower decode (INVESTIGATION.md entry 15).
   */
  prepack?: boolean;
}

async function isFile(path: string): Promise<boolean> {
  try { return (await stat(path)).isFile(); } catch { return false; }
}

/**
 * Picks the graph files of a variant by the model directory's rule (model-dir/files.ts): the
 * suffixed decoders must exist; only the encoder may fall back to the float file.
 */
export async function resolveModelFiles(dir: string, variant: Variant = 'fp32'): Promise<ModelFiles> {
  settleModelDir(dir);
  const embedTokens = join(dir, EMBED_TOKENS_BIN);
  if (!(await isFile(embedTokens))) throw new UserError(`${dir}: no ${EMBED_TOKENS_BIN} (not a qwen3-onnx model directory?)`);
  return {
    encoder: join(dir, await graphFileFor(dir, 'encoder', variant)),
    decoderInit: join(dir, await graphFileFor(dir, 'decoder_init', variant)),
    decoderStep: join(dir, await graphFileFor(dir, 'decoder_step', variant)),
    embedTokens,
  };
}

/** Looks up rows of embed_tokens.bin ([V, H] float16 or float32) with positioned reads, one row per step. */
export class EmbeddingTable {
  private readonly rowBytes: number;
  private readonly buf: Buffer;

  private constructor(
    private readonly handle: FileHandle, private readonly path: string,
    readonly rows: number, readonly hidden: number, readonly dtype: 'float16' | 'float32',
  ) {
    this.rowBytes = hidden * (dtype === 'float16' ? 2 : 4);
    this.buf = Buffer.alloc(this.rowBytes);
  }

  static async open(path: string, shape: readonly [number, number], dtype: 'float16' | 'float32'): Promise<EmbeddingTable> {
    const [rows, hidden] = shape;
    const expected = rows * hidden * (dtype === 'float16' ? 2 : 4);
    let size: number;
    try { size = (await stat(path)).size; } catch (err) { throw fsError('cannot read', path, err); }
    if (size !== expected) {
      throw new UserError(`${path}: ${size} bytes, but config.json says [${rows}, ${hidden}] ${dtype} (${expected} bytes)`);
    }
    let handle: FileHandle;
    try { handle = await open(path, 'r'); } catch (err) { throw fsError('cannot open', path, err); }
    return new EmbeddingTable(handle, path, rows, hidden, dtype);
  }

  /** Row `id` as float32. */
  async row(id: number): Promise<Float32Array> {
    if (!Number.isInteger(id) || id < 0 || id >= this.rows) throw new Error(`${this.path}: token id ${id} outside [0, ${this.rows})`);
    const { bytesRead } = await this.handle.read(this.buf, 0, this.rowBytes, id * this.rowBytes);
    if (bytesRead !== this.rowBytes) throw new UserError(`${this.path}: short read at row ${id}`);
    if (this.dtype === 'float16') return f16BytesToF32(this.buf);
    const out = new Float32Array(this.hidden);
    for (let i = 0; i < this.hidden; i += 1) out[i] = this.buf.readFloatLE(i * 4);
    return out;
  }

  async close(): Promise<void> { await this.handle.close(); }
}

const tokenizers = new Map<string, Promise<Tokenizer>>();

/**
 * Tokenizer.load, shared by the models of one directory in this process (compare loads
 * several variants of one directory); keyed by the tokenizer files' sizes and times.
 */
async function loadTokenizerShared(dir: string): Promise<Tokenizer> {
  const stamps = await Promise.all(['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json'].map(async (f) => {
    try { const st = await stat(join(dir, f)); return `${st.size}:${st.mtimeMs}`; } catch { return '-'; }
  }));
  const key = `${resolve(dir)}|${stamps.join('|')}`;
  let tok = tokenizers.get(key);
  if (!tok) {
    tok = Tokenizer.load(dir);
    tokenizers.set(key, tok);
    tok.catch(() => tokenizers.delete(key));
  }
  return tok;
}

function sessionOptions(threads: number | undefined, prepack: boolean): ort.InferenceSession.SessionOptions {
  return {
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    ...(threads ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {}),
    ...(prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
  };
}

export async function createSession(path: string, threads: number | undefined, prepack: boolean): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, sessionOptions(threads, prepack));
  } catch (err) {
    throw new UserError(`${path}: onnxruntime cannot load it (${String((err as Error)?.message ?? err).split('\n')[0]})`);
  }
}

export class AsrModel implements SpeechModel {
  readonly layout = 'split' as const;

  private constructor(
    readonly dir: string,
    readonly variant: Variant,
    readonly files: ModelFiles,
    readonly config: OutputConfig,
    readonly tokenizer: Tokenizer,
    readonly embeddings: EmbeddingTable,
    readonly encoder: ort.InferenceSession,
    readonly decoderInit: ort.InferenceSession,
    readonly decoderStep: ort.InferenceSession,
    /** Wall time of load(), milliseconds. */
    readonly loadMs: number,
  ) {}

  static async load(dir: string, opts: LoadOptions = {}): Promise<AsrModel> {
    const started = performance.now();
    const variant = opts.variant ?? 'fp32';
    if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads > 0)) {
      throw new UserError(`--threads must be a positive integer, got ${opts.threads}`);
    }
    const { config } = await readModelConfig(dir);
    const files = await resolveModelFiles(dir, variant);
    const tokenizer = await loadTokenizerShared(dir);
    const embeddings = await EmbeddingTable.open(files.embedTokens, config.embed_tokens_shape, config.embed_tokens_dtype);
    const prepack = opts.prepack ?? true;
    const encoder = await createSession(files.encoder, opts.threads, prepack);
    const decoderInit = await createSession(files.decoderInit, opts.threads, prepack);
    const decoderStep = await createSession(files.decoderStep, opts.threads, prepack);
    return new AsrModel(dir, variant, files, config, tokenizer, embeddings, encoder, decoderInit, decoderStep, performance.now() - started);
  }

  async encode(mel: LogMel): Promise<EncodedAudio> {
    const features = await runEncoder(this, mel);
    return { features, audioTokens: features.dims[1] };
  }

  decode(prompt: Prompt, audio: EncodedAudio, opts: DecodeOptions): Promise<GreedyResult> {
    return greedyDecode(this, prompt, audio.features, opts);
  }

  async release(): Promise<void> {
    await Promise.all([this.encoder.release(), this.decoderInit.release(), this.decoderStep.release(), this.embeddings.close()]);
  }
}
