import { UserError } from '../common/errors.js';

/**
 * AWQ smoothing scales from activation statistics:
 *
 *   s_c = (a_c / mean(a))^alpha, clamped to [1e-5, 1e5]
 *
 * with a_c the mean |activation| of channel c. alpha 0 gives s = 1 (plain RTN); alpha 1
 * moves all of a channel's activation magnitude into the following weights. The norm weight
 * is divided by s and the following linears' input rows multiplied by s, so
 * (x·γ/s)·(s·W) = (x·γ)·W: the float function is unchanged, only what rounding sees moves.
 */

/** Best for 0.6B in the Python pipeline's WER sweep (shared/CONTRACT.md); the literature uses 0.5. */
export const AWQ_DEFAULT_ALPHA = 0.2;

const S_MIN = 1e-5;
const S_MAX = 1e5;

export function validateAlpha(alpha: number, flag = '--awq-alpha'): void {
  if (!Number.isFinite(alpha) || alpha < 0 || alpha > 1) throw new UserError(`${flag} must be a number from 0 to 1, got ${alpha}`);
}

export function smoothingScales(meanAbs: ArrayLike<number>, alpha: number): Float64Array {
  validateAlpha(alpha);
  const n = meanAbs.length;
  const s = new Float64Array(n).fill(1);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += meanAbs[i];
  mean /= n;
  if (!(mean > 0) || alpha === 0) return s;
  for (let i = 0; i < n; i++) s[i] = Math.min(S_MAX, Math.max(S_MIN, (meanAbs[i] / mean) ** alpha));
  return s;
}
