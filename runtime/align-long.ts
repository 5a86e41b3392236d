import { placeWords, type WordPlacement } from './align-placement.js';
import { splitWords } from './align-words.js';
import type { TimedWord, WordSegment } from './aligner.js';
import { MODEL_SAMPLE_RATE } from './audio.js';
import { transcribeSamples } from './decode.js';
import { segmentSamples, type SegmentBounds } from './segment.js';
import type { SpeechModel } from './speech-model.js';

/**
 * A known transcript on audio longer than one aligner pass (`align --asr`): the audio is cut as
 * `transcribe --timestamps` cuts it (aligner.ts alignChunkBounds), each chunk is transcribed by an
 * ASR model in the transcript's language, the transcript's units are placed in chunks by matching
 * them to the ASR's units (align-placement.ts), and each chunk is then aligned with its own units.
 */

/** One chunk of the audio and what the ASR model heard in it. */
export interface ChunkTranscript extends SegmentBounds {
  text: string;
  /** The ASR text's units (splitWords, the transcript's language). */
  units: string[];
  /** Wall time of the chunk's transcription (mel, encoder, decoding). */
  asrMs: number;
}

/**
 * Transcribes each chunk on its own with a forced language. transcribeSamples is the one decoding
 * path transcribe uses; inside a chunk it cuts at its default segment length again, so a 180 s
 * chunk is decoded in prefills of about 60 s with --max-new-tokens' default per segment, as
 * `transcribe` would decode it. A chunk shorter than 0.5 s is zero-padded, as the aligner pads it.
 */
export async function transcribeChunks(
  model: SpeechModel, samples: Float32Array, bounds: readonly SegmentBounds[], language: string,
  onChunk: (done: number, total: number) => void = () => {},
): Promise<ChunkTranscript[]> {
  const out: ChunkTranscript[] = [];
  for (const [i, b] of bounds.entries()) {
    onChunk(i, bounds.length);
    const t0 = performance.now();
    const t = await transcribeSamples(model, segmentSamples(samples, b, MODEL_SAMPLE_RATE, true), { language });
    out.push({ start: b.start, end: b.end, text: t.text, units: t.text.trim() === '' ? [] : splitWords(t.text, language), asrMs: performance.now() - t0 });
  }
  onChunk(bounds.length, bounds.length);
  return out;
}

/** The transcript's units placed in the chunks: one aligner segment per chunk (empty where no unit fell). */
export function placeTranscript(userUnits: readonly string[], chunks: readonly ChunkTranscript[]): { segments: WordSegment[]; placement: WordPlacement } {
  const placement = placeWords(userUnits, chunks.map((c) => ({ units: c.units, seconds: (c.end - c.start) / MODEL_SAMPLE_RATE })));
  const perChunk: string[][] = chunks.map(() => []);
  placement.chunkOf.forEach((k, i) => perChunk[k].push(userUnits[i]));
  return { segments: chunks.map((c, k) => ({ start: c.start, end: c.end, words: perChunk[k] })), placement };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/**
 * Caps every word's times at the end of its chunk (`words` in segment order, as alignSegments
 * returns them). The head can name any of its classes (up to 400 s) whatever the chunk's length; on
 * one pass the official code leaves that alone, but across chunks a time past the chunk's end would
 * fall inside the next chunk and break the order of the words. Returns how many times were capped.
 */
export function capToChunks(words: TimedWord[], segments: readonly WordSegment[]): number {
  const placed = segments.reduce((n, s) => n + s.words.length, 0);
  if (placed !== words.length) throw new Error(`capToChunks: ${words.length} timed words for ${placed} placed units`);
  let capped = 0;
  let at = 0;
  for (const seg of segments) {
    const end = round3(seg.end / MODEL_SAMPLE_RATE);
    for (let i = 0; i < seg.words.length; i += 1, at += 1) {
      const w = words[at];
      if (w.start_time > end) { w.start_time = end; capped += 1; }
      if (w.end_time > end) { w.end_time = end; capped += 1; }
    }
  }
  return capped;
}
