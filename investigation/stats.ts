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

/**
 * Runs `fn` `warmup` + `reps` times and prints one line: the median wall time of the timed runs
 * and their mean user and system CPU time per run (CPU time is the steadier figure on a shared box).
 */
export async function printWallAndCpu(label: string, warmup: number, reps: number, fn: () => Promise<unknown>): Promise<void> {
  const wall: number[] = [];
  let user = 0;
  let sys = 0;
  for (let i = 0; i < warmup + reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    if (i < warmup) continue;
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    user += c.user;
    sys += c.system;
  }
  console.log(`${label}: ${median(wall).toFixed(1)} ms wall (median of ${reps}), user ${(user / reps / 1000).toFixed(1)} ms, system ${(sys / reps / 1000).toFixed(1)} ms per run`);
}
