import { UserError } from '../common/errors.js';
import { formatWordTable } from '../runtime/align-format.js';
import { splitWords } from '../runtime/align-words.js';
import {
  AlignerModel, MAX_ALIGN_CHUNK_SECONDS, alignSegments, readAlignerConfig, type ChunkAlignment, type AlignTimings, type TimedWord,
} from '../runtime/aligner.js';
import { loadAudio, MODEL_SAMPLE_RATE } from '../runtime/audio.js';
import type { Transcription } from '../runtime/decode.js';
import { segmentBounds } from '../runtime/segment.js';

/**
 * `transcribe --timestamps --aligner DIR`: after transcription, every file's segments are aligned
 * with their own text by the forced aligner and the times shifted by the segment's offset, as the
 * official transcribe(return_time_stamps=True) does. The segments are the transcription's own
 * quiet-point cuts, capped at MAX_ALIGN_CHUNK_SECONDS (the official cuts at 180 s when it aligns).
 */

export interface TimestampOptions {
  timestamps?: boolean;
  aligner?: string;
  alignerVariant: string;
  threads?: number;
}

export interface FileTimestamps {
  words: TimedWord[];
  alignment: { loadMs: number; chunks: ChunkAlignment[]; timings: AlignTimings };
}

/** Checks --timestamps and --aligner go together and the aligner directory is one, before any transcription. */
export async function checkTimestampOptions(opts: TimestampOptions): Promise<void> {
  if (!opts.timestamps && opts.aligner === undefined) return;
  if (!opts.timestamps) throw new UserError('--aligner is only used with --timestamps');
  if (opts.aligner === undefined) throw new UserError('--timestamps needs --aligner <dir> (an exported Qwen3-ForcedAligner directory)');
  await readAlignerConfig(opts.aligner);
}

/** The segment length transcription uses: with --timestamps at most MAX_ALIGN_CHUNK_SECONDS. */
export function timestampSegmentSeconds(opts: TimestampOptions, maxSegmentSeconds: number): number {
  return opts.timestamps ? Math.min(maxSegmentSeconds, MAX_ALIGN_CHUNK_SECONDS) : maxSegmentSeconds;
}

/** Aligns every transcribed file's segments (files in `files` order); the aligner is loaded once. */
export async function alignTranscriptions(
  files: readonly Transcription[], opts: TimestampOptions, maxSegmentSeconds: number,
): Promise<Array<Transcription & FileTimestamps>> {
  const model = await AlignerModel.load(opts.aligner as string, { variant: opts.alignerVariant, threads: opts.threads });
  try {
    const out: Array<Transcription & FileTimestamps> = [];
    for (const t of files) {
      if (t.file === undefined) throw new Error('transcription without its file');
      const { samples } = await loadAudio(t.file);
      // The same cuts transcribeSamples made (segmentBounds is deterministic).
      const bounds = segmentBounds(samples, MODEL_SAMPLE_RATE, maxSegmentSeconds);
      if (bounds.length !== t.segments.length) throw new Error(`${t.file}: ${bounds.length} cuts, but ${t.segments.length} transcribed segments`);
      const segments = bounds.map((b, i) => {
        const s = t.segments[i];
        return { ...b, words: s.text.trim() === '' ? [] : splitWords(s.text, s.language) };
      });
      const alignment = await alignSegments(model, samples, segments, bounds.length > 1);
      out.push({ ...t, words: alignment.words, alignment: { loadMs: model.loadMs, chunks: alignment.chunks, timings: alignment.timings } });
    }
    return out;
  } finally {
    await model.release();
  }
}

/** Human output: the word table of each file (under a `file:` line when there are several). */
export function formatTimedTranscriptions(files: ReadonlyArray<Transcription & FileTimestamps>): string {
  if (files.length === 1) return formatWordTable(files[0].words);
  return files.map((f) => `${f.file}:\n${formatWordTable(f.words)}`).join('\n\n');
}
