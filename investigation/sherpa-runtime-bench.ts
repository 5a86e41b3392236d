import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { runSherpa, sherpaModelPaths } from '../fixtures/sherpa-consumer.js';
import { transcribeFile } from '../runtime/decode.js';
import { buildPrompt } from '../runtime/prompt.js';
import { cacheFeeds, decoderCall } from '../runtime/sherpa-decode.js';
import { SherpaAsrModel } from '../runtime/sherpa-session.js';
import type { SpeechModel } from '../runtime/speech-model.js';
import { isExternal, loadModel, tensorBytes } from '../common/onnx/index.js';
import { syntheticMel, timedLoads, type RuntimeBenchOptions, type RuntimeFigures, type StepFigure } from './runtime-bench.js';
import { median, round, timeRepeated, timing, type Timing } from './stats.js';

/**
 * The runtime figures of runtime-bench.ts for a sherpa-onnx layout directory, measured the way
 * our runtime runs it (runtime/sherpa-*.ts): SherpaAsrModel.load, encode (conv_frontend +
 * encoder), the prefill of greedy decoding, and one decoder call per step at each past length
 * over cache buffers filled with synthetic rows, the returned deltas written into them (all
 * outputs come back to JS: logits [1,1,V] and the deltas of one row). Also the end-to-end
 * comparison on one clip: our runtime on both layouts and sherpa-onnx-node itself (child
 * process) on the same int4 files.
 */

/** The same options as runtime-bench.ts, for a sherpa-onnx layout directory. */
export type SherpaRuntimeBenchOptions = RuntimeBenchOptions;

/**
 * Bytes of weights one decoder step must read: every external range once, except a token table
 * that only a Gather (or GatherBlockQuantized) reads, of which a step reads one row. The sherpa
 * layout's decoder embeds the ids itself, so its data file holds the embedding table (the split
 * layout's decoder_step takes the embedded row as an input instead).
 */
export async function stepWeightBytes(onnxPath: string): Promise<number> {
  const loaded = await loadModel(onnxPath);
  const lookupOnly = new Map<string, boolean>();
  for (const node of loaded.graph.node) {
    node.input.forEach((name, i) => {
      const gatherData = i === 0 && (node.opType === 'Gather' || node.opType === 'GatherBlockQuantized');
      lookupOnly.set(name, (lookupOnly.get(name) ?? true) && gatherData);
    });
  }
  const ranges = new Map<string, { length: number; rowBytes: number; lookupOnly: boolean }>();
  for (const t of loaded.graph.initializer) {
    if (!isExternal(t)) continue;
    const r = tensorBytes(t, loaded.path);
    if (r.kind !== 'external') continue;
    const key = `${r.file}:${r.offset}:${r.length}`;
    const rows = Number(t.dims[0] ?? 1) || 1;
    const only = lookupOnly.get(t.name) ?? false;
    const seen = ranges.get(key);
    ranges.set(key, { length: r.length, rowBytes: r.length / rows, lookupOnly: (seen?.lookupOnly ?? true) && only });
  }
  let total = 0;
  for (const r of ranges.values()) total += r.lookupOnly ? r.rowBytes : r.length;
  return total;
}

/** decoder call at one past length: `reps` timed runs after `warmup` (all outputs, or logits only). */
export async function timeSherpaStep(model: SherpaAsrModel, audio: ort.Tensor, past: number, warmup: number, reps: number, logitsOnly = false): Promise<number[]> {
  const kvFeeds = cacheFeeds(model, past + 1);
  const rng = new Prng(100 + past);
  for (const t of Object.values(kvFeeds)) {
    const data = t.data as Float32Array;
    for (let i = 0; i < past * model.cache.rowFloats; i++) data[i] = rng.next() - 0.5;
  }
  const ids = BigInt64Array.from([13n]);
  if (!logitsOnly) return timeRepeated(warmup, reps, () => decoderCall(model, audio, kvFeeds, ids, past));
  const { io } = model;
  const feeds: Record<string, ort.Tensor> = {
    [io.inputIds]: new ort.Tensor('int64', ids, [1, 1]),
    [io.audioFeatures]: audio,
    [io.attentionMask]: new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]),
    [io.cachePosition]: new ort.Tensor('int64', BigInt64Array.from([BigInt(past)]), [1]),
    ...kvFeeds,
  };
  return timeRepeated(warmup, reps, () => model.decoder.run(feeds, [io.logits]));
}

export async function measureSherpaRuntime(o: SherpaRuntimeBenchOptions): Promise<RuntimeFigures> {
  const loadOpts = { variant: o.variant, threads: o.threads };
  const { model, loads } = await timedLoads(() => SherpaAsrModel.load(o.modelDir, loadOpts), o.loadReps);
  try {
    const frames = Math.round(o.audioSeconds * 100);
    const mel = syntheticMel(model.config.encoder.num_mel_bins, frames);
    let encoded = await model.encode(mel);
    const encoderMs = await timeRepeated(o.warmup, o.reps, async () => { encoded = await model.encode(mel); });
    const prompt = buildPrompt(model.tokenizer, { audioTokens: encoded.audioTokens });
    const prefillMs: number[] = [];
    for (let i = 0; i < o.warmup + o.reps; i++) {
      const r = await model.decode(prompt, encoded, { maxNewTokens: 2, repetitionGuard: false });
      if (i >= o.warmup) prefillMs.push(r.prefillMs);
    }
    const weightBytes = await stepWeightBytes(model.files.decoder);
    const d = model.config.decoder;
    const steps: StepFigure[] = [];
    for (const past of o.pastLengths) {
      steps.push({
        past,
        timing: timing(await timeSherpaStep(model, encoded.features, past, o.warmup, o.reps)),
        logitsOnly: timing(await timeSherpaStep(model, encoded.features, past, o.warmup, o.reps, true)),
        weightBytes,
        kvBytes: 2 * d.num_layers * d.num_key_value_heads * past * d.head_dim * 4,
      });
    }
    return {
      variant: o.variant,
      threads: o.threads ?? 'default',
      load: timing(loads),
      audioSeconds: o.audioSeconds,
      melFrames: frames,
      audioTokens: encoded.audioTokens,
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

/** One runtime on one clip: load, then the whole recognition (features, encoder, prefill, steps). */
export interface ClipRun {
  runtime: string;
  loadMs: number;
  /** Wall time of recognising the clip, median of the repetitions. */
  recognise: Timing;
  /** Tokens generated (sherpa: its token strings, the language prefix dropped). */
  tokens: number;
}

/** Our runtime on `file` (either layout), `reps` recognitions after one untimed. */
export async function timeOurClip(load: () => Promise<SpeechModel>, label: string, file: string, maxNewTokens: number, reps: number): Promise<ClipRun> {
  const model = await load();
  try {
    const run = () => transcribeFile(model, file, { maxNewTokens });
    const first = await run();
    const ms = await timeRepeated(0, reps, run);
    return { runtime: label, loadMs: round(model.loadMs, 1), recognise: timing(ms), tokens: first.tokens.length };
  } finally {
    await model.release();
  }
}

/** sherpa-onnx-node on the same files: one child process, the clip recognised 1 + reps times (the first untimed). */
export async function timeSherpaClip(modelDir: string, variant: string, file: string, maxNewTokens: number, reps: number, threads: number): Promise<ClipRun> {
  const run = await runSherpa({
    model: await sherpaModelPaths(modelDir, variant), files: Array.from({ length: reps + 1 }, () => file),
    maxNewTokens, maxTotalLen: 2048, numThreads: threads,
  });
  const [first, ...timed] = run.results;
  return { runtime: `sherpa-onnx-node ${variant}`, loadMs: round(run.loadMs, 1), recognise: timing(timed.map((r) => r.ms)), tokens: first.tokens.length };
}
