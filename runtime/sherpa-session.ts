import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { readModelConfig, type OutputConfig } from '../model-dir/config.js';
import type { DecodeOptions, GreedyResult } from './decode.js';
import type { LogMel } from './mel.js';
import { ASR_TEXT_TAG, AUDIO_PAD, type Prompt } from './prompt.js';
import { createSession } from './session.js';
import { resolveSherpaFiles, type SherpaModelFiles } from './sherpa-files.js';
import { encodeSherpa, sherpaGreedyDecode } from './sherpa-decode.js';
import type { EncodedAudio, SpeechModel } from './speech-model.js';
import { Tokenizer } from './tokenizer.js';

/**
 * A loaded sherpa-onnx layout model directory (shared/SHERPA-ONNX.md): config.json, the
 * conv_frontend / encoder / decoder sessions of one variant, the tokenizer/ folder, and the
 * per-layer key and value cache buffers the decoder reads on every call.
 *
 * The decoder is fed by position, as sherpa-onnx binds it: its graph's own input and output
 * names are read at load, and their counts, dtypes and static cache dims are checked against
 * config.json then (a mismatch is one line naming the file, before any audio is read).
 */

export interface SherpaLoadOptions {
  variant?: string;
  threads?: number;
  /** onnxruntime weight pre-packing (see LoadOptions.prepack in session.ts); default true. */
  prepack?: boolean;
}

/** The decoder's interface as read from its graph, positions resolved to names. */
export interface DecoderIo {
  inputIds: string;
  audioFeatures: string;
  attentionMask: string;
  cachePosition: string;
  /** Per layer: [key input, value input]. */
  pastKv: Array<[string, string]>;
  logits: string;
  /** Per layer: [key delta output, value delta output]. */
  deltaKv: Array<[string, string]>;
}

function tensorMeta(session: ort.InferenceSession, kind: 'input' | 'output', index: number): ort.InferenceSession.TensorValueMetadata | undefined {
  const m = (kind === 'input' ? session.inputMetadata : session.outputMetadata)[index];
  return m && m.isTensor ? m : undefined;
}

/** Checks the decoder's inputs and outputs against the layers, heads and head size of config.json. */
export function decoderIo(session: ort.InferenceSession, path: string, config: OutputConfig): DecoderIo {
  const layers = config.decoder.num_layers;
  const kv = config.decoder.num_key_value_heads;
  const hd = config.decoder.head_dim;
  const ins = session.inputNames;
  const outs = session.outputNames;
  if (ins.length !== 4 + 2 * layers) {
    throw new UserError(`${path}: ${ins.length} inputs, but config.json's ${layers} decoder layers need 4 + 2 x ${layers} = ${4 + 2 * layers}`);
  }
  if (outs.length !== 1 + 2 * layers) {
    throw new UserError(`${path}: ${outs.length} outputs, but config.json's ${layers} decoder layers need 1 + 2 x ${layers} = ${1 + 2 * layers}`);
  }
  const want: Array<[number, ort.Tensor.Type]> = [[0, 'int64'], [1, 'float32'], [2, 'int64'], [3, 'int64']];
  for (const [i, type] of want) {
    const m = tensorMeta(session, 'input', i);
    if (m && m.type !== type) throw new UserError(`${path}: input ${i} (${ins[i]}) is ${m.type}, expected ${type}`);
  }
  for (let i = 4; i < ins.length; i += 1) {
    const m = tensorMeta(session, 'input', i);
    if (!m) continue;
    const [, , heads, dim] = m.shape;
    if (m.type !== 'float32' || m.shape.length !== 4 || heads !== kv || dim !== hd) {
      throw new UserError(`${path}: cache input ${i} (${ins[i]}) is ${m.type} [${m.shape.join(', ')}], expected float32 [1, T, ${kv}, ${hd}] with static heads and head size`);
    }
  }
  const pairs = (names: readonly string[], from: number): Array<[string, string]> =>
    Array.from({ length: layers }, (_, l) => [names[from + 2 * l], names[from + 2 * l + 1]]);
  return {
    inputIds: ins[0], audioFeatures: ins[1], attentionMask: ins[2], cachePosition: ins[3],
    pastKv: pairs(ins, 4), logits: outs[0], deltaKv: pairs(outs, 1),
  };
}

/**
 * One key and one value buffer per layer, [1, T, kv_heads, head_dim] float32, grown only when a
 * decode needs more rows than any before it. Each decode views the first T rows as the cache
 * tensors it feeds on every call (onnxruntime reads them in place: nothing is copied in) and
 * writes the returned deltas into them.
 */
export class KvCacheBuffers {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private rows = 0;

  constructor(readonly layers: number, readonly kvHeads: number, readonly headDim: number) {}

  get rowFloats(): number { return this.kvHeads * this.headDim; }

  /** Rows allocated per layer. */
  get capacity(): number { return this.rows; }

  /** Cache tensors over the first `rows` rows of every buffer (allocating larger buffers if needed). */
  views(rows: number): Array<[ort.Tensor, ort.Tensor]> {
    if (rows > this.rows) {
      const n = rows * this.rowFloats;
      this.keys = Array.from({ length: this.layers }, () => new Float32Array(n));
      this.values = Array.from({ length: this.layers }, () => new Float32Array(n));
      this.rows = rows;
    }
    const n = rows * this.rowFloats;
    const dims = [1, rows, this.kvHeads, this.headDim];
    return this.keys.map((k, l) => [
      new ort.Tensor('float32', k.subarray(0, n), dims),
      new ort.Tensor('float32', this.values[l].subarray(0, n), dims),
    ]);
  }

  /** Copies a call's key and value deltas [1, S, kv, hd] of `layer` into rows position.. */
  write(layer: number, position: number, keyDelta: Float32Array, valueDelta: Float32Array): void {
    const at = position * this.rowFloats;
    if (at + keyDelta.length > this.keys[layer].length || keyDelta.length !== valueDelta.length) {
      throw new Error(`cache write of ${keyDelta.length / this.rowFloats} rows at ${position} passes the ${this.rows}-row buffers`);
    }
    this.keys[layer].set(keyDelta, at);
    this.values[layer].set(valueDelta, at);
  }
}

export class SherpaAsrModel implements SpeechModel {
  readonly layout = 'sherpa-onnx' as const;
  readonly cache: KvCacheBuffers;

  private constructor(
    readonly dir: string,
    readonly variant: string,
    readonly files: SherpaModelFiles,
    readonly config: OutputConfig,
    readonly tokenizer: Tokenizer,
    readonly convFrontend: ort.InferenceSession,
    readonly encoder: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
    readonly io: DecoderIo,
    readonly loadMs: number,
  ) {
    this.cache = new KvCacheBuffers(config.decoder.num_layers, config.decoder.num_key_value_heads, config.decoder.head_dim);
  }

  static async load(dir: string, opts: SherpaLoadOptions = {}): Promise<SherpaAsrModel> {
    const started = performance.now();
    const variant = opts.variant ?? 'fp32';
    if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads > 0)) {
      throw new UserError(`--threads must be a positive integer, got ${opts.threads}`);
    }
    const { config } = await readModelConfig(dir);
    const files = await resolveSherpaFiles(dir, variant);
    const tokenizer = await Tokenizer.load(files.tokenizerDir);
    for (const tag of [ASR_TEXT_TAG, AUDIO_PAD]) {
      if (tokenizer.tokenId(tag) === undefined) throw new UserError(`${files.tokenizerDir}: the tokenizer has no ${tag} token (sherpa-onnx refuses it too)`);
    }
    const prepack = opts.prepack ?? true;
    const opened: ort.InferenceSession[] = [];
    try {
      const convFrontend = await createSession(files.convFrontend, opts.threads, prepack);
      opened.push(convFrontend);
      if (convFrontend.inputNames.length !== 1 || convFrontend.outputNames.length !== 1) {
        throw new UserError(`${files.convFrontend}: ${convFrontend.inputNames.length} inputs and ${convFrontend.outputNames.length} outputs, expected 1 and 1`);
      }
      const encoder = await createSession(files.encoder, opts.threads, prepack);
      opened.push(encoder);
      if (encoder.inputNames.length !== 2 || encoder.outputNames.length !== 1) {
        throw new UserError(`${files.encoder}: ${encoder.inputNames.length} inputs and ${encoder.outputNames.length} outputs, expected 2 (conv output, mask) and 1`);
      }
      const mask = tensorMeta(encoder, 'input', 1);
      if (mask && mask.type !== 'bool') throw new UserError(`${files.encoder}: mask input ${encoder.inputNames[1]} is ${mask.type}, sherpa-onnx feeds bool`);
      const decoder = await createSession(files.decoder, opts.threads, prepack);
      opened.push(decoder);
      const io = decoderIo(decoder, files.decoder, config);
      return new SherpaAsrModel(dir, variant, files, config, tokenizer, convFrontend, encoder, decoder, io, performance.now() - started);
    } catch (err) {
      await Promise.all(opened.map((s) => s.release()));
      throw err;
    }
  }

  encode(mel: LogMel): Promise<EncodedAudio> {
    return encodeSherpa(this, mel);
  }

  decode(prompt: Prompt, audio: EncodedAudio, opts: DecodeOptions): Promise<GreedyResult> {
    return sherpaGreedyDecode(this, prompt, audio, opts);
  }

  async release(): Promise<void> {
    await Promise.all([this.convFrontend.release(), this.encoder.release(), this.decoder.release()]);
  }
}
