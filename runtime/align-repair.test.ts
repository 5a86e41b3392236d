import { describe, expect, it } from 'vitest';
import { Prng } from '../common/prng.js';
import { longestNonDecreasing, repairTimestamps } from './align-repair.js';

describe('longestNonDecreasing', () => {
  it('is the first chain the O(n^2) programme finds', () => {
    // 0,200,300 and 0,100,300 are both longest; 300 extends 200 first (a later equal length does not replace it).
    expect(longestNonDecreasing([0, 200, 100, 300])).toEqual([0, 1, 3]);
    // Two chains of length 2 end at index 1 and 2: the first index reaching the maximum ends it.
    expect(longestNonDecreasing([0, 300, 100])).toEqual([0, 1]);
    // Equal values continue a chain (non-decreasing).
    expect(longestNonDecreasing([5, 5, 5])).toEqual([0, 1, 2]);
    expect(longestNonDecreasing([])).toEqual([]);
  });
});

describe('repairTimestamps', () => {
  it('leaves monotone and all-equal sequences alone', () => {
    expect(repairTimestamps([0, 80, 80, 160, 240])).toEqual([0, 80, 80, 160, 240]);
    expect(repairTimestamps([240, 240, 240, 240])).toEqual([240, 240, 240, 240]);
    expect(repairTimestamps([720])).toEqual([720]);
    expect(repairTimestamps([])).toEqual([]);
  });

  it('a run of 1 in the middle: equidistant neighbours, the tie goes left', () => {
    // 720 is the anomaly; neighbours 80 (index 1) and 160 (index 3) are both 1 away.
    expect(repairTimestamps([0, 80, 720, 160, 240])).toEqual([0, 80, 80, 160, 240]);
  });

  it('the first longest chain decides which value is the anomaly', () => {
    // Chain 0,200,300: 100 is the anomaly and takes the left 200 (tie); the other chain would give [0, 0, 100, 300].
    expect(repairTimestamps([0, 200, 100, 300])).toEqual([0, 200, 200, 300]);
    expect(repairTimestamps([0, 300, 100])).toEqual([0, 300, 300]);
  });

  it('a run of 2: each value takes the nearer neighbour by index', () => {
    // Anomalies at 1, 2 between 0 (index 0) and 160 (index 3): index 1 is nearer the left, 2 the right.
    expect(repairTimestamps([0, 400, 480, 160, 240, 320])).toEqual([0, 0, 160, 160, 240, 320]);
  });

  it('a run of 3 or more: linear interpolation between the neighbours, truncated to integers', () => {
    // 100 -> 200 over 4 steps of 25.
    expect(repairTimestamps([0, 100, 900, 950, 990, 200, 300, 400, 500])).toEqual([0, 100, 125, 150, 175, 200, 300, 400, 500]);
    // 0 -> 100 over 6 steps of 16.67: 16.67, 33.33, 50, 66.67, 83.33 truncated.
    expect(repairTimestamps([0, 900, 901, 902, 903, 904, 100, 110, 120, 130, 140, 150]))
      .toEqual([0, 16, 33, 50, 66, 83, 100, 110, 120, 130, 140, 150]);
  });

  it('runs at the start take the right neighbour, at the end the left one (short and long runs)', () => {
    expect(repairTimestamps([500, 0, 80, 160])).toEqual([0, 0, 80, 160]);
    expect(repairTimestamps([900, 800, 0, 80, 160])).toEqual([0, 0, 0, 80, 160]);
    expect(repairTimestamps([900, 950, 990, 0, 10, 20, 30])).toEqual([0, 0, 0, 0, 10, 20, 30]);
    expect(repairTimestamps([0, 80, 160, 40])).toEqual([0, 80, 160, 160]);
    expect(repairTimestamps([0, 10, 20, 30, 5, 4, 3])).toEqual([0, 10, 20, 30, 30, 30, 30]);
  });

  it('several runs in one sequence are repaired independently', () => {
    // Chain 0,80,160,240,320,400,480,560; anomalies: [1] (run 1), [4, 5] (run 2), [8, 9, 10] (run 3).
    const input = [0, 999, 80, 160, 700, 800, 240, 320, 1, 2, 3, 400, 480, 560];
    expect(repairTimestamps(input)).toEqual([0, 0, 80, 160, 160, 240, 240, 320, 340, 360, 380, 400, 480, 560]);
  });

  it('on random sequences: same length, non-decreasing, the chain values untouched', () => {
    const rng = new Prng(7);
    for (let trial = 0; trial < 300; trial += 1) {
      const n = 1 + (rng.nextU32() % 24);
      const values = Array.from({ length: n }, () => (rng.nextU32() % 40) * 80);
      const fixed = repairTimestamps(values);
      expect(fixed.length).toBe(n);
      for (let i = 1; i < n; i += 1) expect(fixed[i]).toBeGreaterThanOrEqual(fixed[i - 1]);
      for (const i of longestNonDecreasing(values)) expect(fixed[i]).toBe(values[i]);
      for (const v of fixed) expect(Number.isInteger(v)).toBe(true);
    }
  });
});
