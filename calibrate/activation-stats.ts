/**
 * Running per-channel sums of |activation| in float64, one accumulator per norm output, so
 * calibration memory stays at one vector per norm however long the audio is.
 */

export interface ChannelMeans {
  /** Rows (token positions) that went into the mean. */
  positions: number;
  /** Mean |activation| per channel. */
  meanAbs: Float64Array;
}

export class ActivationStats {
  private readonly sums = new Map<string, Float64Array>();
  private readonly rows = new Map<string, number>();

  constructor(channelsByKey: ReadonlyMap<string, number>) {
    for (const [key, channels] of channelsByKey) {
      this.sums.set(key, new Float64Array(channels));
      this.rows.set(key, 0);
    }
  }

  /** Adds every row of a [..., channels] activation (row-major, channels last). */
  add(key: string, data: ArrayLike<number>): void {
    const sum = this.sums.get(key);
    if (!sum) throw new Error(`no activation accumulator for ${key}`);
    const c = sum.length;
    if (data.length % c !== 0) throw new Error(`${key}: ${data.length} values is not a whole number of ${c}-channel rows`);
    for (let base = 0; base < data.length; base += c) {
      for (let i = 0; i < c; i++) sum[i] += Math.abs(data[base + i]);
    }
    this.rows.set(key, this.rows.get(key)! + data.length / c);
  }

  keys(): string[] {
    return [...this.sums.keys()].sort();
  }

  positions(key: string): number {
    return this.rows.get(key) ?? 0;
  }

  means(key: string): ChannelMeans {
    const sum = this.sums.get(key);
    if (!sum) throw new Error(`no activation accumulator for ${key}`);
    const n = this.rows.get(key)!;
    const meanAbs = new Float64Array(sum.length);
    if (n > 0) for (let i = 0; i < sum.length; i++) meanAbs[i] = sum[i] / n;
    return { positions: n, meanAbs };
  }
}
