import { cp, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dimsFromConfig, readCheckpointConfig, type ModelDims } from '../checkpoint/config.js';
import { openSafetensors } from '../checkpoint/safetensors.js';
import { UserError } from '../common/errors.js';
import { DataType, loadModel, type ValueInfoProto } from '../common/onnx/index.js';
import { loadReferenceWeights, referenceEncoder, referenceGreedyDecode, type WeightLookup } from '../fixtures/reference/index.js';
import { runSherpa, sherpaModelPaths, type SherpaClipResult, type SherpaRun } from '../fixtures/sherpa-consumer.js';
import { untiedTinyCheckpointDir } from '../fixtures/sherpa-support.js';
import { sherpaResultFor } from '../fixtures/sherpa-text.js';
import { runTranscribe } from '../cli/transcribe.js';
import { runWer } from '../cli/wer.js';
import { exportModel } from '../graph-builder/export.js';
import { quantizeModelDir, QUANTIZE_DEFAULTS } from '../quantize/model-dir.js';
import { loadAudio } from './audio.js';
import { compareVariants } from './compare.js';
import { audioTokenCount, transcribeFile, type Transcription } from './decode.js';
import { logMelSpectrogram } from './mel.js';
import { buildPrompt } from './prompt.js';
import { cacheFeeds, convFrontendRows, sherpaValidTokens } from './sherpa-decode.js';
import { SherpaAsrModel } from './sherpa-session.js';
import { encodeWav } from './wav-writer.js';

/**
 * The sherpa-onnx layout proven by its real consumer: one tiny export (an untied-head tiny
 * checkpoint, fixtures/sherpa-support.ts, whose greedy output moves between tokens) decoded by
 * sherpa-onnx's OfflineRecognizer (sherpa-onnx-node, in a child process) and by our runtime on
 * a clip under 1 s, a 7 s clip (mel tail not a whole chunk) and jfk.wav (11 s: two 104-token
 * attention windows). sherpa's text and token strings must equal what our ids spell under
 * sherpa's tokenizer rules, and our ids the float64 reference's.
 */

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const TOKENS = 20;
const CHECKPOINT = { seed: 0, permutation: 2 };

let scratch: string;
let dir: string;
let checkpoint: string;
let model: SherpaAsrModel;
let clips: string[];
let weights: WeightLookup;
let dims: ModelDims;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-sherpa-runtime-'));
  checkpoint = await untiedTinyCheckpointDir(CHECKPOINT.seed, CHECKPOINT.permutation);
  dir = join(scratch, 'model');
  await exportModel({ model: checkpoint, output: dir, layout: 'sherpa-onnx' });
  // The first 0.6 s of jfk.wav (60 mel frames: one short conv chunk, 8 audio tokens).
  const jfk = await loadAudio(join(AUDIO, 'jfk.wav'));
  const short = join(scratch, 'jfk-0.6s.wav');
  await writeFile(short, encodeWav({ sampleRate: 16000, channels: [Float64Array.from(jfk.samples.subarray(0, 9600))], encoding: 'pcm16' }));
  clips = [short, join(AUDIO, 'notld/7s_i_wonder_what_happened.wav'), join(AUDIO, 'jfk.wav')];
  model = await SherpaAsrModel.load(dir, { threads: 1 });
  dims = dimsFromConfig(await readCheckpointConfig(checkpoint));
  const src = await openSafetensors(checkpoint);
  try { weights = await loadReferenceWeights(src); } finally { await src.close(); }
}, 240_000);

afterAll(async () => {
  await model?.release();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/**
 * A copy of `from` under the scratch dir: its folders, its files that `keep` accepts linked
 * (symbolic links: nothing big is copied), and the `own` files copied so a test can edit them.
 */
async function linkedCopy(name: string, from: string, keep: (rel: string) => boolean, own: readonly string[] = []): Promise<string> {
  const copy = join(scratch, name);
  await cp(from, copy, { recursive: true, filter: async (src) => (await stat(src)).isDirectory() });
  for (const rel of await readdir(from, { recursive: true })) {
    if ((await stat(join(from, rel))).isDirectory() || !keep(rel)) continue;
    if (own.includes(rel)) await cp(join(from, rel), join(copy, rel));
    else await symlink(join(from, rel), join(copy, rel));
  }
  return copy;
}

function expectSameAsSherpa(ours: Transcription, theirs: SherpaClipResult): void {
  const want = sherpaResultFor(model.tokenizer, ours.tokens);
  expect(theirs.tokens).toEqual(want.tokens);
  expect(theirs.text).toBe(want.text);
}

/** The float64 reference on the same audio: encoder, the same prompt, greedy decode. */
async function referenceTokens(file: string, language?: string): Promise<{ tokens: number[]; audioTokens: number }> {
  const mel = logMelSpectrogram((await loadAudio(file)).samples);
  const enc = referenceEncoder(weights, dims, Float64Array.from(mel.data), mel.frames);
  const prompt = buildPrompt(model.tokenizer, { audioTokens: enc.tokens, language });
  return { tokens: referenceGreedyDecode(weights, dims, { promptIds: prompt.ids, audioFeatures: enc.features, maxTokens: TOKENS }).tokens, audioTokens: enc.tokens };
}

describe('sherpa-onnx OfflineRecognizer vs our runtime on the sherpa-onnx layout (fp32)', () => {
  // One sherpa process for both tests: the three clips, then the 7 s clip with language English.
  let theirs: SherpaRun;
  beforeAll(async () => {
    theirs = await runSherpa({ model: await sherpaModelPaths(dir), files: [...clips, { file: clips[1], language: 'English' }], maxNewTokens: TOKENS, maxTotalLen: 1024, numThreads: 1 });
  }, 120_000);

  it('same text and token strings on a 0.6 s, a 7 s and an 11 s clip; our ids equal the float64 reference', async () => {
    expect(theirs.results.map((r) => r.file)).toEqual([...clips, clips[1]]);
    for (const [i, file] of clips.entries()) {
      const ours = await transcribeFile(model, file, { maxNewTokens: TOKENS });
      // Both stopped at the token limit (sherpa stops only at <|im_end|> or its limits), on output worth comparing.
      expect(ours.stopReason, file).toBe('max_new_tokens');
      expect(ours.tokens.length).toBe(TOKENS);
      expect(new Set(ours.tokens).size, `${file}: distinct ids`).toBeGreaterThanOrEqual(5);
      expectSameAsSherpa(ours, theirs.results[i]);
      const ref = await referenceTokens(file);
      expect(ours.audioTokens).toBe(ref.audioTokens);
      expect(ours.tokens, file).toEqual(ref.tokens);
    }
  });

  it("with stream.setOption('language', 'English'): the prompt ends in language English<asr_text>", async () => {
    const file = clips[1];
    const ours = await transcribeFile(model, file, { maxNewTokens: TOKENS, language: 'English' });
    const plain = await transcribeFile(model, file, { maxNewTokens: TOKENS });
    expect(ours.tokens).not.toEqual(plain.tokens);
    expectSameAsSherpa(ours, theirs.results[3]);
    expect(ours.tokens).toEqual((await referenceTokens(file, 'English')).tokens);
  });
});

describe('transcribe and wer recognise the layout by themselves (calibrate: calibrate/sherpa-calibrate.test.ts)', () => {
  it('runTranscribe and runWer on the sherpa-onnx directory decode with SherpaAsrModel', async () => {
    const expected = (await transcribeFile(model, clips[1], { maxNewTokens: 4 })).tokens;
    const common = { modelDir: dir, variant: 'fp32', maxNewTokens: 4, maxSegmentSeconds: 30, threads: 1, quiet: true };
    const report = await runTranscribe([clips[1]], common);
    expect(report.layout).toBe('sherpa-onnx');
    expect(report.files[0].tokens).toEqual(expected);
    const manifest = join(scratch, 'manifest.tsv');
    await writeFile(manifest, `${clips[1]}\t${report.files[0].text}\n`);
    const wer = await runWer({ ...common, manifest });
    expect(wer.error).toBeUndefined();
    expect(wer.files).toHaveLength(1);
    expect(wer.wer).toBe(0);
  });
});

/** Our greedy ids on a file and, per generated position, the gap between the two largest logits. */
async function decodeWithGaps(m: SherpaAsrModel, file: string): Promise<{ tokens: number[]; gaps: number[] }> {
  const encoded = await m.encode(logMelSpectrogram((await loadAudio(file)).samples));
  const gaps: number[] = [];
  const { tokens } = await m.decode(buildPrompt(m.tokenizer, { audioTokens: encoded.audioTokens }), encoded, {
    maxNewTokens: TOKENS,
    onLogits: (_, row) => {
      let a = -Infinity;
      let b = -Infinity;
      for (const v of row) { if (v > a) { b = a; a = v; } else if (v > b) b = v; }
      gaps.push(a - b);
    },
  });
  return { tokens, gaps };
}

describe('sherpa-onnx OfflineRecognizer vs our runtime on the int4 files', () => {
  let int4: SherpaAsrModel;
  let exactDir: string;
  let exact: SherpaAsrModel;
  beforeAll(async () => {
    await quantizeModelDir({ modelDir: dir, ...QUANTIZE_DEFAULTS, bits: 4, exclude: [], threads: 1 });
    int4 = await SherpaAsrModel.load(dir, { variant: 'int4', threads: 1 });
    // The same int4 weights with float activations (accuracy_level 0): no int8 rounding of activations.
    exactDir = await linkedCopy('int4-accuracy0', dir, (rel) => !rel.includes('.int4.'));
    await quantizeModelDir({ modelDir: exactDir, ...QUANTIZE_DEFAULTS, bits: 4, accuracyLevel: 0, exclude: [], threads: 1 });
    exact = await SherpaAsrModel.load(exactDir, { variant: 'int4', threads: 1 });
  }, 120_000);
  afterAll(async () => { await Promise.all([int4?.release(), exact?.release()]); });

  it('accuracy_level 0: same text and token strings on the three clips', async () => {
    const paths = await sherpaModelPaths(exactDir, 'int4');
    expect(paths.decoder).toBe(join(exactDir, 'decoder.int4.onnx'));
    const theirs = await runSherpa({ model: paths, files: clips, maxNewTokens: TOKENS, maxTotalLen: 1024, numThreads: 1 });
    for (const [i, file] of clips.entries()) {
      const ours = await transcribeFile(exact, file, { maxNewTokens: TOKENS });
      expect(ours.stopReason, file).toBe('max_new_tokens');
      expect(new Set(ours.tokens).size, `${file}: distinct ids`).toBeGreaterThanOrEqual(5);
      expectSameAsSherpa(ours, theirs.results[i]);
    }
  });

  it('the default files (accuracy_level 4, int8 activations): the same tokens up to the first near-tie', async () => {
    // sherpa-onnx-node bundles onnxruntime 1.28.2, we run 1.30.0: their int8-activation MatMulNBits
    // kernels round differently, which can flip an argmax whose top-2 logits are close. A
    // divergence where our margin is clear would be a real difference in what the graphs are fed.
    const theirs = await runSherpa({ model: await sherpaModelPaths(dir, 'int4'), files: clips, maxNewTokens: TOKENS, maxTotalLen: 1024, numThreads: 1 });
    for (const [i, file] of clips.entries()) {
      const ours = await decodeWithGaps(int4, file);
      const want = sherpaResultFor(int4.tokenizer, ours.tokens).tokens;
      const got = theirs.results[i].tokens;
      const first = want.findIndex((t, k) => t !== got[k]);
      if (first < 0) expect(got).toEqual(want);
      else expect(ours.gaps[first], `${file}: diverges at token ${first}`).toBeLessThan(0.05);
    }
  });

  it('the whole-model recipe (int4 encoder, an int4 lookup with float16 scales, bf16 conv weights): sherpa-onnx gives our tokens up to the first near-tie', async () => {
    const wholeDir = await linkedCopy('int4-whole', dir, (rel) => !rel.includes('.int4.'));
    // The tiny convs are a few KiB: threshold 0 so the bf16 Casts are in the files sherpa-onnx loads.
    const q = await quantizeModelDir({ modelDir: wholeDir, ...QUANTIZE_DEFAULTS, bits: 4, preset: 'whole', exclude: [], threads: 1, bf16ConvMinBytes: 0 });
    const frontend = await loadModel(join(wholeDir, 'conv_frontend.int4.onnx'));
    expect(frontend.graph.initializer.filter((t) => t.dataType === DataType.BFLOAT16).length).toBe(frontend.graph.node.filter((n) => n.opType === 'Conv').length);
    // This checkpoint is untied (sherpa-support.ts): the lookup has its own table, with float16 scales.
    expect(q.sharedEmbedding).toBe(false);
    expect(q.components.embedding.precision).toBe('int4');
    const whole = await SherpaAsrModel.load(wholeDir, { variant: 'int4', threads: 1 });
    try {
      const theirs = await runSherpa({ model: await sherpaModelPaths(wholeDir, 'int4'), files: clips, maxNewTokens: TOKENS, maxTotalLen: 1024, numThreads: 1 });
      for (const [i, file] of clips.entries()) {
        const ours = await decodeWithGaps(whole, file);
        const want = sherpaResultFor(whole.tokenizer, ours.tokens).tokens;
        const got = theirs.results[i].tokens;
        const first = want.findIndex((t, k) => t !== got[k]);
        if (first < 0) expect(got).toEqual(want);
        else expect(ours.gaps[first], `${file}: diverges at token ${first}`).toBeLessThan(0.05);
        expect(got.length).toBeGreaterThan(0);
      }
    } finally {
      await whole.release();
    }
  });

  it('compare fp32,int4 on the layout: the baseline is our fp32 greedy decode, teacher forcing covers every step', async () => {
    const report = await compareVariants({ modelDir: dir, variants: ['fp32', 'int4'], files: [clips[0]], maxNewTokens: 6, threads: 1, minTop1: 0, minCosine: -1 });
    const [c] = report.comparisons;
    expect(report.passed).toBe(true);
    expect(c.files[0].baselineTokens).toEqual((await transcribeFile(model, clips[0], { maxNewTokens: 6 })).tokens);
    expect(c.files[0].candidateTokens).toEqual((await transcribeFile(int4, clips[0], { maxNewTokens: 6 })).tokens);
    expect(c.steps).toBe(6);
    expect(c.meanCosine).toBeGreaterThan(0.5);
  });
});

const shapeOf = (v: ValueInfoProto): Array<string | number> =>
  (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || Number(d.dimValue));
const typeOf = (v: ValueInfoProto): number => v.type?.tensorType?.elemType ?? 0;
const BOOL = 9;
const FLOAT = 1;
const INT64 = 7;

describe('the rules sherpa-onnx enforces that a run might not show', () => {
  it('graph interfaces, read from the .onnx files: order, dtypes, bool mask, static kv heads and head_dim, dynamic cache length', async () => {
    const { num_layers: layers, num_key_value_heads: kv, head_dim: hd } = model.config.decoder;
    const conv = (await loadModel(join(dir, 'conv_frontend.onnx'))).graph;
    expect(conv.input.length).toBe(1);
    expect(conv.output.length).toBe(1);
    expect(shapeOf(conv.input[0])[2]).toBe(128);
    const encoder = (await loadModel(join(dir, 'encoder.onnx'))).graph;
    expect(encoder.input.map(typeOf)).toEqual([FLOAT, BOOL]);
    expect(encoder.output.length).toBe(1);
    const decoder = (await loadModel(join(dir, 'decoder.onnx'))).graph;
    expect(decoder.input.length).toBe(4 + 2 * layers);
    expect(decoder.output.length).toBe(1 + 2 * layers);
    expect(decoder.input.slice(0, 4).map(typeOf)).toEqual([INT64, FLOAT, INT64, INT64]);
    expect(shapeOf(decoder.input[3]).length).toBe(1);
    for (const v of decoder.input.slice(4)) {
      const [batch, rows, heads, dim] = shapeOf(v);
      expect([batch, heads, dim]).toEqual([1, kv, hd]);
      expect(typeof rows).toBe('string');
    }
    for (const v of decoder.output.slice(1)) expect(shapeOf(v).slice(2)).toEqual([kv, hd]);
    // Our runtime binds by the same positions: its names for them come from the graph.
    expect(model.io.pastKv.flat()).toEqual(decoder.input.slice(4).map((v) => v.name));
    expect(model.io.deltaKv.flat()).toEqual(decoder.output.slice(1).map((v) => v.name));
  });

  it('padded encoder rows are exactly zero, so sherpa trims them to the valid count', async () => {
    for (const file of clips.slice(0, 2)) {
      const mel = logMelSpectrogram((await loadAudio(file)).samples);
      expect(sherpaValidTokens(mel.frames)).toBe(audioTokenCount(mel.frames));
      const encoded = await model.encode(mel);
      const rows = convFrontendRows(mel.frames);
      expect(encoded.audioTokens).toBe(sherpaValidTokens(mel.frames));
      expect(rows).toBeGreaterThan(encoded.audioTokens);
      // The trimmed view keeps exactly the valid rows; the full output's tail is zero.
      expect(encoded.features.dims).toEqual([1, encoded.audioTokens, model.config.decoder.hidden_size]);
      const kept = encoded.features.data as Float32Array;
      const full = new Float32Array(kept.buffer, kept.byteOffset, rows * model.config.decoder.hidden_size);
      const tail = full.subarray(encoded.audioTokens * model.config.decoder.hidden_size);
      expect(tail.length).toBeGreaterThan(0);
      expect(tail.every((x) => x === 0)).toBe(true);
    }
  });

  it('the decoder returns logits for every prompt position', async () => {
    const mel = logMelSpectrogram((await loadAudio(clips[0])).samples);
    const encoded = await model.encode(mel);
    const prompt = buildPrompt(model.tokenizer, { audioTokens: encoded.audioTokens });
    const S = prompt.ids.length;
    const feeds: Record<string, ort.Tensor> = {
      ...cacheFeeds(model, S + 4),
      [model.io.inputIds]: new ort.Tensor('int64', BigInt64Array.from(prompt.ids, BigInt), [1, S]),
      [model.io.audioFeatures]: encoded.features,
      [model.io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
      [model.io.cachePosition]: new ort.Tensor('int64', BigInt64Array.from(prompt.ids, (_, i) => BigInt(i)), [S]),
    };
    const out = await model.decoder.run(feeds);
    expect(out[model.io.logits].dims).toEqual([1, S, model.config.decoder.vocab_size]);
    expect(out[model.io.deltaKv[0][0]].dims).toEqual([1, S, model.config.decoder.num_key_value_heads, model.config.decoder.head_dim]);
  });
});

describe('bad model directories: one line naming the file, before any audio', () => {
  const copyModel = (name: string, own: readonly string[] = []): Promise<string> =>
    linkedCopy(name, dir, () => true, own);

  it('a missing graph', async () => {
    const copy = await copyModel('no-decoder');
    await rm(join(copy, 'decoder.onnx'));
    await expect(SherpaAsrModel.load(copy)).rejects.toThrow(/decoder\.onnx is missing/);
    await expect(SherpaAsrModel.load(dir, { variant: 'int8' })).rejects.toThrow(/variant int8 has no decoder\.int8\.onnx \(run quantize first\)/);
  });

  it('a decoder whose input count does not match config.json layers', async () => {
    const copy = await copyModel('layers', ['config.json']);
    const configPath = join(copy, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { decoder: { num_layers: number } };
    config.decoder.num_layers += 1;
    await writeFile(configPath, JSON.stringify(config));
    const err = await SherpaAsrModel.load(copy).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/decoder\.onnx: 10 inputs, but config\.json's 4 decoder layers need 4 \+ 2 x 4 = 12$/);
  });

  it('a tokenizer folder without <asr_text>', async () => {
    const copy = await copyModel('tokenizer', [join('tokenizer', 'tokenizer_config.json')]);
    const path = join(copy, 'tokenizer', 'tokenizer_config.json');
    const config = JSON.parse(await readFile(path, 'utf8')) as { added_tokens_decoder: Record<string, { content: string }> };
    for (const [id, t] of Object.entries(config.added_tokens_decoder)) if (t.content === '<asr_text>') delete config.added_tokens_decoder[id];
    await writeFile(path, JSON.stringify(config));
    await expect(SherpaAsrModel.load(copy)).rejects.toThrow(/tokenizer: the tokenizer has no <asr_text> token/);
  });
});
