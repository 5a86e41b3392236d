import * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { audioTokenCount, greedyLoop } from './decode.js';
import type { LogMel } from './mel.js';
import type { Prompt } from './prompt.js';
import type { EmbeddingTable } from './session.js';

/**
 * The three graphs of a model directory run one at a time, each by its own session: the
 * encoder, decoder_init (prefill) and decoder_step (greedy loop), with everything one graph
 * hands the next (audio features, the prefill's last logits row and caches) kept in JS between
 * them. `compare` uses this so that only one graph's weights are ever resident; the decoding
 * is the same as greedyDecode's (decode.ts), step for step.
 */

/** What the stages need of an onnxruntime session (tests wrap the factory to watch opens and closes). */
export interface GraphSession {
  run(feeds: Record<string, ort.Tensor>): Promise<Readonly<Record<string, ort.Tensor>>>;
  release(): Promise<void>;
}

export interface GraphSessionOptions {
  threads?: number;
  /** onnxruntime weight pre-packing (see LoadOptions.prepack in session.ts). */
  prepack: boolean;
}

export type OpenGraph = (path: string, opts: GraphSessionOptions) => Promise<GraphSession>;

/** The session options AsrModel.load uses (session.ts), so a staged run computes what a loaded model does. */
export const openOrtGraph: OpenGraph = async (path, opts) => {
  try {
    return await ort.InferenceSession.create(path, {
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
      ...(opts.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
    });
  } catch (err) {
    throw new UserError(`${path}: onnxruntime cannot load it (${String((err as Error)?.message ?? err).split('\n')[0]})`);
  }
};

/** Opens one graph, runs `use` on it, and releases it whatever happens. */
export async function withGraph<T>(open: OpenGraph, path: string, opts: GraphSessionOptions, use: (s: GraphSession) => Promise<T>): Promise<T> {
  const session = await open(path, opts);
  try {
    return await use(session);
  } finally {
    await session.release();
  }
}

function output(out: Readonly<Record<string, ort.Tensor>>, name: string, graph: string): ort.Tensor {
  const t = out[name];
  if (!t) throw new Error(`${graph}: no ${name} output`);
  return t;
}

/** The encoder on a mel spectrogram: audio_features [1, A, H], checked as runEncoder checks it. */
export async function encodeMel(encoder: GraphSession, path: string, mel: LogMel, hidden: number): Promise<ort.Tensor> {
  const out = await encoder.run({ mel: new ort.Tensor('float32', mel.data, [1, mel.nMels, mel.frames]) });
  const features = output(out, 'audio_features', path);
  const expected = audioTokenCount(mel.frames);
  if (features.dims.length !== 3 || features.dims[1] !== expected || features.dims[2] !== hidden) {
    throw new UserError(`${path}: audio_features has shape [${features.dims.join(', ')}], expected [1, ${expected}, ${hidden}] for ${mel.frames} mel frames`);
  }
  return features;
}

/** What decoder_init leaves for decoder_step: the last position's logits and the caches. */
export interface Prefilled {
  /** Logits of the prompt's last position (a copy: the [S, V] tensor is not kept). */
  row: Float32Array;
  keys: ort.Tensor;
  values: ort.Tensor;
  promptLength: number;
}

const int64 = (values: number[], dims: number[]): ort.Tensor =>
  new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);

export async function prefill(init: GraphSession, path: string, prompt: Prompt, features: ort.Tensor): Promise<Prefilled> {
  const S = prompt.ids.length;
  const out = await init.run({
    input_ids: int64(prompt.ids, [1, S]),
    position_ids: int64(prompt.ids.map((_, i) => i), [1, S]),
    audio_features: features,
    audio_offset: int64([prompt.audioOffset], [1]),
  });
  const logits = output(out, 'logits', path);
  const [, rows, vocab] = logits.dims;
  const row = (logits.data as Float32Array).slice((rows - 1) * vocab, rows * vocab);
  return { row, keys: output(out, 'present_keys', path), values: output(out, 'present_values', path), promptLength: S };
}

export interface StepLoopOptions {
  maxNewTokens: number;
  eosTokenIds: readonly number[];
  hidden: number;
  /** Teacher forcing: feed these tokens instead of the argmax (generation stops at their end). */
  forcedTokens?: readonly number[];
  repetitionGuard?: boolean;
  /** Every generated position's logits row: the prefill's, then each step's (valid during the call only). */
  onLogits?: (step: number, row: Float32Array) => void;
}

/** The greedy loop of greedyDecode (decode.ts greedyLoop) from a prefill, on a decoder_step session. Returns the tokens without the EOS. */
export async function decodeSteps(
  step: GraphSession, path: string, embeddings: EmbeddingTable, start: Prefilled, opts: StepLoopOptions,
): Promise<{ tokens: number[]; stoppedAtEos: boolean }> {
  let { keys, values } = start;
  const r = await greedyLoop(async () => start.row, async (token, n) => {
    const out = await step.run({
      input_embeds: new ort.Tensor('float32', await embeddings.row(token), [1, 1, opts.hidden]),
      position_ids: int64([start.promptLength + n], [1, 1]),
      past_keys: keys,
      past_values: values,
    });
    const logits = output(out, 'logits', path);
    const vocab = logits.dims[2];
    keys = output(out, 'present_keys', path);
    values = output(out, 'present_values', path);
    return (logits.data as Float32Array).subarray((logits.dims[1] - 1) * vocab, logits.dims[1] * vocab);
  }, opts.eosTokenIds, opts);
  return { tokens: r.tokens, stoppedAtEos: r.stoppedAtEos };
}
