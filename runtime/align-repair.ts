/**
 * Monotonicity repair of the aligner's timestamps (official Qwen3ForceAlignProcessor.fix_timestamp,
 * shared/ALIGNER.md step 6). The 2N values (start and end of each word, in ms) should never go
 * down; the model sometimes puts one out of order. The repair keeps the longest non-decreasing
 * subsequence and rewrites the rest:
 *
 * 1. the longest non-decreasing subsequence is the first one the O(n^2) dynamic programme finds
 *    (a predecessor replaces the current one only when it makes the chain strictly longer; the
 *    first index reaching the maximum length ends it); values outside it are anomalies;
 * 2. a run of at most 2 anomalies takes the value of the nearer good neighbour by index (a tie
 *    goes to the left one; with one side missing, the other side's value);
 * 3. a longer run is interpolated linearly between its good neighbours (one side missing: the
 *    other side's value copied);
 * 4. every value is truncated to an integer (Python int(): towards zero).
 */

/** Indices of the first longest non-decreasing subsequence, ascending. */
export function longestNonDecreasing(values: readonly number[]): number[] {
  const n = values.length;
  if (n === 0) return [];
  const length = new Array<number>(n).fill(1);
  const parent = new Array<number>(n).fill(-1);
  for (let i = 1; i < n; i += 1) {
    for (let j = 0; j < i; j += 1) {
      if (values[j] <= values[i] && length[j] + 1 > length[i]) {
        length[i] = length[j] + 1;
        parent[i] = j;
      }
    }
  }
  let end = 0;
  for (let i = 1; i < n; i += 1) if (length[i] > length[end]) end = i;
  const chain: number[] = [];
  for (let i = end; i !== -1; i = parent[i]) chain.push(i);
  return chain.reverse();
}

/** The repaired sequence (same length; non-decreasing; integers). */
export function repairTimestamps(values: readonly number[]): number[] {
  const n = values.length;
  const good = new Array<boolean>(n).fill(false);
  for (const i of longestNonDecreasing(values)) good[i] = true;
  const out = values.slice();
  let i = 0;
  while (i < n) {
    if (good[i]) { i += 1; continue; }
    let j = i;
    while (j < n && !good[j]) j += 1;
    // The run is [i, j): i - 1 (if any) and j (if any) are good, so they are the neighbours.
    const left = i > 0 ? out[i - 1] : undefined;
    const right = j < n ? out[j] : undefined;
    const run = j - i;
    for (let k = i; k < j; k += 1) {
      if (left === undefined) out[k] = right as number;
      else if (right === undefined) out[k] = left;
      else if (run <= 2) out[k] = k - (i - 1) <= j - k ? left : right;
      else out[k] = left + ((right - left) / (run + 1)) * (k - i + 1);
    }
    i = j;
  }
  return out.map((v) => Math.trunc(v));
}
