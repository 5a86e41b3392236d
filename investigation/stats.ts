/** Small statistics helpers for the benchmarks: every timed figure is a median of repetitions. */

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Runs `fn` `warmup` times untimed, then `reps` times timed; returns the timings in ms. */
export async function timeRepeated(warmup: number, reps: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times;
}

/** Median + spread of a sample, as stored in the results JSON. */
export interface Timing { medianMs: number; minMs: number; maxMs: number; samplesMs: number[] }

export function timing(samplesMs: readonly number[]): Timing {
  return {
    medianMs: round(median(samplesMs), 3),
    minMs: round(Math.min(...samplesMs), 3),
    maxMs: round(Math.max(...samplesMs), 3),
    samplesMs: samplesMs.map((v) => round(v, 3)),
  };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
