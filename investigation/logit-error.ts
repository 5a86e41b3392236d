import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readJsonWith } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { buildPrompt, type Prompt } from '../runtime/prompt.js';
import { Tokenizer } from '../runtime/tokenizer.js';
import { AudioEncoder } from '../calibrate/audio-features.js';
import type { EmbeddingTable } from '../runtime/session.js';

/**
 * How far a candidate decoder (int4, smoothed, ...) is from a reference (fp32), teacher-forced
 * on the reference's greedy tokens so both see the same positions:
 *
 *   reference: prefill ─argmax─▶ t1 ─step─▶ t2 ... (steps tokens)
 *   candidate: prefill, then steps fed t1, t2, ...  (its own KV cache)
 *   per position: ‖l_c − l_r‖₂ / ‖l_r‖₂ and whether argmax agrees
 */

export interface DecoderGraphs {
  init: string;
  step: string;
}

export interface EvalCase {
  name: string;
  prompt: Prompt;
  audioFeatures: ort.Tensor;
}

export interface LogitError {
  cases: number;
  /** Positions compared (per case: the prefill's last position plus each teacher-forced step). */
  positions: number;
  /** Mean over positions of the relative L2 error of the logits. */
  meanRelL2: number;
  /** Fraction of positions whose argmax matches the reference's. */
  top1Agreement: number;
}

export interface CompareOptions {
  /** Decode steps after the prefill. */
  steps: number;
  embeddings: EmbeddingTable;
  hidden: number;
  threads?: number;
}

export async function compareLogits(reference: DecoderGraphs, candidate: DecoderGraphs, cases: EvalCase[], opts: CompareOptions): Promise<LogitError> {
  const sessionOpts: ort.InferenceSession.SessionOptions = opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {};
  const open = async (g: DecoderGraphs): Promise<[ort.InferenceSession, ort.InferenceSession]> =>
    [await ort.InferenceSession.create(g.init, sessionOpts), await ort.InferenceSession.create(g.step, sessionOpts)];
  const ref = await open(reference);
  const cand = await open(candidate);
  try {
    let positions = 0;
    let relSum = 0;
    let agree = 0;
    for (const c of cases) {
      const refLogits = await teacherForced(ref, c, null, opts);
      const candLogits = await teacherForced(cand, c, refLogits.tokens, opts);
      for (let i = 0; i < refLogits.rows.length; i++) {
        const r = refLogits.rows[i];
        const x = candLogits.rows[i];
        let num = 0;
        let den = 0;
        for (let j = 0; j < r.length; j++) { num += (x[j] - r[j]) ** 2; den += r[j] ** 2; }
        relSum += Math.sqrt(num / den);
        if (argmax(x) === argmax(r)) agree += 1;
        positions += 1;
      }
    }
    return { cases: cases.length, positions, meanRelL2: relSum / positions, top1Agreement: agree / positions };
  } finally {
    await Promise.all([...ref, ...cand].map((s) => s.release()));
  }
}

/** Last-position logits of the prefill and of each step; tokens: forced, or the argmax when null. */
async function teacherForced(
  [init, step]: [ort.InferenceSession, ort.InferenceSession], c: EvalCase, forced: number[] | null, opts: CompareOptions,
): Promise<{ rows: Float32Array[]; tokens: number[] }> {
  const S = c.prompt.ids.length;
  let out = await init.run({
    input_ids: int64(c.prompt.ids, [1, S]),
    position_ids: int64(c.prompt.ids.map((_, i) => i), [1, S]),
    audio_features: c.audioFeatures,
    audio_offset: int64([c.prompt.audioOffset], [1]),
  });
  const rows: Float32Array[] = [];
  const tokens: number[] = [];
  for (let n = 0; ; n++) {
    const data = out.logits.data as Float32Array;
    const V = out.logits.dims[2];
    const row = data.slice(data.length - V);
    rows.push(row);
    if (n === opts.steps) break;
    const next = forced ? forced[n] : argmax(row);
    tokens.push(next);
    out = await step.run({
      input_embeds: new ort.Tensor('float32', await opts.embeddings.row(next), [1, 1, opts.hidden]),
      position_ids: int64([S + n], [1, 1]),
      past_keys: out.present_keys,
      past_values: out.present_values,
    });
  }
  return { rows, tokens };
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

const int64 = (values: number[], dims: number[]): ort.Tensor =>
  new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);

/** Evaluation cases from WAV files: float encoder features and the default prompt. */
export async function audioEvalCases(modelDir: string, files: string[], opts: { threads?: number } = {}): Promise<EvalCase[]> {
  const config = await readJsonWith(OutputConfigSchema, join(modelDir, 'config.json'));
  const tokenizer = await Tokenizer.load(modelDir);
  const encoder = await AudioEncoder.open(modelDir, config.decoder.hidden_size, opts);
  try {
    const cases: EvalCase[] = [];
    for (const file of files) {
      const { features, audioTokens } = await encoder.encodeFile(file);
      cases.push({ name: basename(file), prompt: buildPrompt(tokenizer, { audioTokens }), audioFeatures: features });
    }
    return cases;
  } finally {
    await encoder.release();
  }
}
