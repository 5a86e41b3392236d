import { expect } from 'vitest';
import type { ModelDims } from '../checkpoint/config.js';
import { openCheckpoint } from '../checkpoint/open-checkpoint.js';
import { loadReferenceWeights, type WeightLookup } from '../fixtures/reference/index.js';
import { tinyCheckpointDir } from '../fixtures/test-support.js';

/**
 * Asserts that `got` matches the float64 reference `want` within `rel` of the reference's scale
 * (max |got - want| / max |want|), the tolerance the export tests state. Test-only.
 */
export function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, rel = 1e-4): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
  }
  expect(scale, `${what}: reference is all zero`).toBeGreaterThan(0);
  expect(diff / scale, `${what}: max diff ${diff} vs scale ${scale}`).toBeLessThanOrEqual(rel);
}

/** The tiny fixture checkpoint's dims and its weights as the float64 reference reads them. Test-only. */
export async function tinyReferenceWeights(): Promise<{ dims: ModelDims; weights: WeightLookup }> {
  const ckpt = await openCheckpoint(await tinyCheckpointDir());
  try {
    return { dims: ckpt.dims, weights: await loadReferenceWeights(ckpt.tensors) };
  } finally {
    await ckpt.tensors.close();
  }
}
