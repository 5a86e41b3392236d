import type * as ort from 'onnxruntime-node';
import { UserError } from '../common/errors.js';
import { ActivationStats } from './activation-stats.js';
import type { NormStats } from './stats-file.js';
import type { Tap } from './tapped-session.js';

/**
 * The statistics of the taps of one or more tapped decoder graphs (the split layout's
 * decoder_init and decoder_step, or the sherpa-onnx layout's one decoder): every tap's norm
 * output added to its norm's running sums, and per norm the linears it feeds in any graph.
 */
export class TapStats {
  private readonly stats: ActivationStats;
  private readonly linears = new Map<string, Set<string>>();

  constructor(tapSets: readonly (readonly Tap[])[]) {
    const channels = new Map<string, number>();
    for (const t of tapSets.flat()) {
      const seen = channels.get(t.key);
      if (seen !== undefined && seen !== t.channels) throw new UserError(`norm ${t.key} has ${seen} channels in one decoder graph and ${t.channels} in the other`);
      channels.set(t.key, t.channels);
      const set = this.linears.get(t.key) ?? new Set<string>();
      for (const l of t.linears) set.add(l);
      this.linears.set(t.key, set);
    }
    this.stats = new ActivationStats(channels);
  }

  /** Adds every tap of `taps` found in one run's outputs. */
  add(out: ort.InferenceSession.OnnxValueMapType, taps: readonly Tap[]): void {
    for (const t of taps) {
      const v = out[t.value];
      if (!v || v.type !== 'float32') throw new Error(`tap ${t.value} missing from the outputs or not float32`);
      if (v.dims[v.dims.length - 1] !== t.channels) throw new Error(`tap ${t.value}: last dim ${v.dims[v.dims.length - 1]}, expected ${t.channels}`);
      this.stats.add(t.key, v.data as Float32Array);
    }
  }

  /** Per norm: the linears it feeds, positions seen and mean |activation| per channel. */
  normStats(): Record<string, NormStats> {
    const out: Record<string, NormStats> = {};
    for (const key of this.stats.keys()) {
      const m = this.stats.means(key);
      if (m.positions === 0) throw new UserError(`norm ${key}: no positions were recorded (no calibration audio?)`);
      out[key] = { linears: [...this.linears.get(key)!].sort(), positions: m.positions, mean_abs: Array.from(m.meanAbs) };
    }
    return out;
  }
}
