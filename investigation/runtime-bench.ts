import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { isExternal, loadModel, tensorBytes } from '../common/onnx/index.js';
import { greedyDecode, runEncoder } from '../runtime/decode.js';
import type { LogMel } from '../runtime/mel.js';
import { buildPrompt } from '../runtime/prompt.js';
import { AsrModel } from '../runtime/session.js';
import { median, round, timeRepeated, timing, type Timing } from './stats.js';

/**
 * The figures a user of a produced model directory sees on onnxruntime-node, per variant:
 * load time, encoder ms per second of audio, prefill ms, and decoder_step ms per token at
 * several past lengths, each the median of timed repetitions after warm-up runs. The model is
 * loaded and driven by runtime/ (AsrModel.load, runEncoder, greedyDecode); decoder_step is
 * called directly with synthetic caches of exactly the wanted past length.
 */

export interface RuntimeBenchOptions {
  modelDir: string;
  variant: string;
  /** onnxruntime intra-op threads (undefined: onnxruntime's default, all cores). */
  threads?: number;
  warmup: number;
  reps: number;
  loadReps: number;
  audioSeconds: number;
  pastLengths: number[];
}

export interface StepFigure {
  past: number;
  timing: Timing;
  /**
   * The same run fetching only `logits`: the caches stay inside onnxruntime, so the difference
   * is what onnxruntime-node spends copying present_keys/values into fresh JS buffers.
   */
  logitsOnly: Timing;
  /** Bytes a step must read at least: the step graph's weights + the past keys and values. */
  weightBytes: number;
  kvBytes: number;
}

export interface RuntimeFigures {
  variant: string;
  threads: number | 'default';
  load: Timing;
  audioSeconds: number;
  melFrames: number;
  audioTokens: number;
  encoder: Timing;
  encoderMsPerAudioSecond: number;
  promptTokens: number;
  prefill: Timing;
  steps: StepFigure[];
}

/** Deterministic mel-like input (values in the log-mel range), [nMels, frames] bin-major. */
export function syntheticMel(nMels: number, frames: number): LogMel {
  const rng = new Prng(11);
  const data = new Float32Array(nMels * frames);
  for (let i = 0; i < data.length; i++) data[i] = rng.next() * 2.5 - 1.5;
  return { data, nMels, frames };
}

/** Bytes of weights a graph references (external data, each distinct range once). */
export async function graphWeightBytes(onnxPath: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const loaded = await loadModel(onnxPath);
  for (const t of loaded.model.graph?.initializer ?? []) {
    if (!isExternal(t)) continue;
    const r = tensorBytes(t, loaded.path);
    if (r.kind !== 'external') continue;
    const key = `${r.file}:${r.offset}:${r.length}`;
    if (seen.has(key)) continue;
    seen.add(key);
    total += r.length;
  }
  return total;
}

/** Stacked cache tensors [L, 1, KV, past, D] filled with small uniform values. */
export function syntheticCache(model: AsrModel, past: number, seed: number): { keys: ort.Tensor; values: ort.Tensor } {
  const d = model.config.decoder;
  const dims = [d.num_layers, 1, d.num_key_value_heads, past, d.head_dim];
  const n = dims.reduce((a, b) => a * b, 1);
  const rng = new Prng(seed);
  const fill = (): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.next() - 0.5;
    return a;
  };
  return { keys: new ort.Tensor('float32', fill(), dims), values: new ort.Tensor('float32', fill(), dims) };
}

/** decoder_step at one past length: `reps` timed runs after `warmup` (all outputs, or logits only). */
export async function timeDecoderStep(model: AsrModel, past: number, warmup: number, reps: number, logitsOnly = false): Promise<number[]> {
  const cache = syntheticCache(model, past, 100 + past);
  const hidden = model.config.decoder.hidden_size;
  const embeds = new ort.Tensor('float32', await model.embeddings.row(13), [1, 1, hidden]);
  const feeds = {
    input_embeds: embeds,
    position_ids: new ort.Tensor('int64', BigInt64Array.from([BigInt(past)]), [1, 1]),
    past_keys: cache.keys,
    past_values: cache.values,
  };
  return timeRepeated(warmup, reps, () => (logitsOnly ? model.decoderStep.run(feeds, ['logits']) : model.decoderStep.run(feeds)));
}

export function kvBytes(model: AsrModel, past: number): number {
  const d = model.config.decoder;
  return 2 * d.num_layers * d.num_key_value_heads * past * d.head_dim * 4;
}

/**
 * One untimed load first (page cache, ORT's one-time init), then `reps` timed loads (each released
 * before the next); returns the last model, still loaded, and the timed loads' own loadMs.
 */
export async function timedLoads<M extends { loadMs: number; release(): Promise<void> }>(load: () => Promise<M>, reps: number): Promise<{ model: M; loads: number[] }> {
  const loads: number[] = [];
  let model = await load();
  for (let i = 0; i < reps; i++) {
    await model.release();
    model = await load();
    loads.push(model.loadMs);
  }
  return { model, loads };
}

export async function measureRuntime(o: RuntimeBenchOptions): Promise<RuntimeFigures> {
  const loadOpts = { variant: o.variant, threads: o.threads };
  const { model, loads } = await timedLoads(() => AsrModel.load(o.modelDir, loadOpts), o.loadReps);
  try {
    const frames = Math.round(o.audioSeconds * 100);
    const mel = syntheticMel(model.config.encoder.num_mel_bins, frames);
    let features: ort.Tensor | undefined;
    const encoderMs = await timeRepeated(o.warmup, o.reps, async () => { features = await runEncoder(model, mel); });
    const audioFeatures = features!;
    const prompt = buildPrompt(model.tokenizer, { audioTokens: audioFeatures.dims[1] });
    const prefillMs: number[] = [];
    for (let i = 0; i < o.warmup + o.reps; i++) {
      const r = await greedyDecode(model, prompt, audioFeatures, { maxNewTokens: 1, repetitionGuard: false });
      if (i >= o.warmup) prefillMs.push(r.prefillMs);
    }
    const weightBytes = await graphWeightBytes(model.files.decoderStep);
    const steps: StepFigure[] = [];
    for (const past of o.pastLengths) {
      steps.push({
        past,
        timing: timing(await timeDecoderStep(model, past, o.warmup, o.reps)),
        logitsOnly: timing(await timeDecoderStep(model, past, o.warmup, o.reps, true)),
        weightBytes,
        kvBytes: kvBytes(model, past),
      });
    }
    return {
      variant: o.variant,
      threads: o.threads ?? 'default',
      load: timing(loads),
      audioSeconds: o.audioSeconds,
      melFrames: frames,
      audioTokens: audioFeatures.dims[1],
      encoder: timing(encoderMs),
      encoderMsPerAudioSecond: round(median(encoderMs) / o.audioSeconds, 3),
      promptTokens: prompt.ids.length,
      prefill: timing(prefillMs),
      steps,
    };
  } finally {
    await model.release();
  }
}

export interface ThreadSweepPoint { threads: number; step: Timing }
export interface ThreadSweep { variant: string; past: number; points: ThreadSweepPoint[]; bestThreads: number }

/** decoder_step ms at one past length for each intra-op thread count; names the fastest. */
export async function threadSweep(o: {
  modelDir: string; variant: string; threads: number[]; past: number; warmup: number; reps: number;
}): Promise<ThreadSweep> {
  const points: ThreadSweepPoint[] = [];
  for (const t of o.threads) {
    const model = await AsrModel.load(o.modelDir, { variant: o.variant, threads: t });
    try {
      points.push({ threads: t, step: timing(await timeDecoderStep(model, o.past, o.warmup, o.reps)) });
    } finally {
      await model.release();
    }
  }
  const best = points.reduce((a, b) => (b.step.medianMs < a.step.medianMs ? b : a));
  return { variant: o.variant, past: o.past, points, bestThreads: best.threads };
}
