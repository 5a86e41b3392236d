/**
 * How often a quantised aligner variant picks the float model's timestamp class: runs the fp32
 * encoder + aligner_decoder and a variant's on the same seeded inputs (random mel, aligner prompt
 * of random words) and compares timestamp_classes position by position. The forced aligner's
 * counterpart of runtime/compare.ts (which compares transcriptions).
 *
 * Used by build's gate for aligner variants (package/aligner-build.ts), quantize/aligner.test.ts
 * (the tiny aligner's head-precision measurement) and investigation/aligner-bench.ts.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Prng } from '../common/prng.js';
import { alignerGraphFileName } from '../model-dir/aligner.js';

export interface AgreementCase { frames: number; words: number; seed: number }

export interface Agreement {
  /** Timestamp positions compared (over every case). */
  positions: number;
  /** Positions where the variant's class equals the float model's. */
  same: number;
  /** Largest |class difference| (in classes of timestamp_segment_ms). */
  maxShift: number;
  /** Mean |class difference|. */
  meanShift: number;
  /** Smallest top-1 / top-2 margin of the float logits among the positions that changed (NaN: none changed). */
  smallestChangedMargin: number;
}

/** Aligner ids: <|audio_start|>, n pads, <|audio_end|>, then per word 1-3 tokens and two <timestamp>. */
export function alignerPromptIds(rng: Prng, audioTokens: number, words: number): number[] {
  const ids = [151669, ...Array.from({ length: audioTokens }, () => 151676), 151670];
  for (let w = 0; w < words; w++) {
    const n = 1 + (rng.nextU32() % 3);
    for (let k = 0; k < n; k++) ids.push(rng.nextU32() % 151643);
    ids.push(151705, 151705);
  }
  return ids;
}

export const DEFAULT_CASES: readonly AgreementCase[] = [
  { frames: 300, words: 8, seed: 1 }, { frames: 800, words: 20, seed: 2 }, { frames: 1500, words: 30, seed: 3 },
  { frames: 450, words: 12, seed: 4 }, { frames: 1100, words: 25, seed: 5 },
];

interface Sessions { encoder: ort.InferenceSession; decoder: ort.InferenceSession }

async function open(dir: string, variant: string): Promise<Sessions> {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2 };
  return {
    encoder: await ort.InferenceSession.create(join(dir, alignerGraphFileName('encoder', variant)), opts),
    decoder: await ort.InferenceSession.create(join(dir, alignerGraphFileName('aligner_decoder', variant)), opts),
  };
}

async function classesOf(s: Sessions, mel: Float32Array, frames: number, rng: Prng, words: number): Promise<{ classes: number[]; logits: Float32Array }> {
  const audio = (await s.encoder.run({ mel: new ort.Tensor('float32', mel, [1, 128, frames]) })).audio_features;
  const ids = alignerPromptIds(rng, audio.dims[1], words);
  const out = await s.decoder.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]), audio_features: audio });
  return { classes: Array.from(out.timestamp_classes.data as BigInt64Array, Number), logits: out.timestamp_logits.data as Float32Array };
}

/**
 * Agreement of `variantDir`'s `variant` graphs with `refDir`'s `refVariant` ones (fp32 by default;
 * the same directory is fine). A quantised reference isolates one component: two int4 variants
 * that differ only in the head's precision see the same hidden states.
 */
export async function alignerAgreement(
  refDir: string, variantDir: string, variant: string, cases: readonly AgreementCase[] = DEFAULT_CASES, refVariant = 'fp32',
): Promise<Agreement> {
  const ref = await open(refDir, refVariant);
  const q = await open(variantDir, variant);
  let positions = 0; let same = 0; let maxShift = 0; let total = 0; let smallest = Number.NaN;
  for (const c of cases) {
    const melRng = new Prng(c.seed);
    const mel = Float32Array.from({ length: 128 * c.frames }, () => melRng.next() * 2.5 - 1);
    const a = await classesOf(ref, mel, c.frames, new Prng(c.seed + 1000), c.words);
    const b = await classesOf(q, mel, c.frames, new Prng(c.seed + 1000), c.words);
    const width = a.logits.length / Math.max(1, a.classes.length);
    a.classes.forEach((cls, k) => {
      positions += 1;
      const shift = Math.abs(cls - b.classes[k]);
      if (shift === 0) { same += 1; return; }
      maxShift = Math.max(maxShift, shift);
      total += shift;
      const row = Array.from(a.logits.subarray(k * width, (k + 1) * width)).sort((x, y) => y - x);
      const margin = row[0] - row[1];
      smallest = Number.isNaN(smallest) ? margin : Math.min(smallest, margin);
    });
  }
  return { positions, same, maxShift, meanShift: total / Math.max(1, positions), smallestChangedMargin: smallest };
}
