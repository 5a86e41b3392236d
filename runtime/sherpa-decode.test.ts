import { describe, expect, it } from 'vitest';
import { audioTokenCount } from './decode.js';
import { convFrontendRows, frameMajorMel, sherpaValidTokens, trimmedRows } from './sherpa-decode.js';
import { KvCacheBuffers } from './sherpa-session.js';

describe('what the sherpa-onnx runtime computes around the graphs', () => {
  it("sherpa's valid-token count equals the split runtime's for every frame count up to 30 s", () => {
    for (let t = 1; t <= 3000; t += 1) expect(sherpaValidTokens(t), `T=${t}`).toBe(audioTokenCount(t));
    expect(sherpaValidTokens(60)).toBe(8);
    expect(sherpaValidTokens(100)).toBe(13);
    expect(sherpaValidTokens(101)).toBe(14);
  });

  it('conv_frontend rows: whole chunks, the last one padded', () => {
    expect([1, 60, 100, 101, 1100].map(convFrontendRows)).toEqual([13, 13, 13, 26, 143]);
  });

  it('mel goes from [128, T] bin-major to [T, 128] frame-major', () => {
    const nMels = 3;
    const frames = 4;
    const data = Float32Array.from({ length: nMels * frames }, (_, i) => i);
    const out = frameMajorMel({ data, nMels, frames });
    for (let m = 0; m < nMels; m += 1) for (let t = 0; t < frames; t += 1) expect(out[t * nMels + m]).toBe(data[m * frames + t]);
  });

  it('trims trailing rows whose largest |value| is at most 1e-6, no others', () => {
    const hidden = 2;
    const rows = (...r: number[][]): Float32Array => Float32Array.from(r.flat());
    expect(trimmedRows(rows([1, 0], [0, 0], [0, 2e-6], [1e-6, -1e-6], [0, 0]), 5, hidden)).toBe(3);
    expect(trimmedRows(rows([0, 0], [0, 0]), 2, hidden)).toBe(0);
    expect(trimmedRows(rows([0, -0.5]), 1, hidden)).toBe(1);
  });

  it('cache buffers: views share the buffers, deltas land at their rows, growth only when needed', () => {
    const cache = new KvCacheBuffers(2, 2, 3);
    const first = cache.views(4);
    expect(first[1][0].dims).toEqual([1, 4, 2, 3]);
    cache.write(1, 2, Float32Array.from({ length: 6 }, (_, i) => i + 1), Float32Array.from({ length: 6 }, () => -1));
    const key = first[1][0].data as Float32Array;
    expect(Array.from(key.subarray(12, 18))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(Array.from(key.subarray(0, 12)).every((x) => x === 0)).toBe(true);
    expect(Array.from((first[1][1].data as Float32Array).subarray(12, 18))).toEqual([-1, -1, -1, -1, -1, -1]);
    // A shorter view reads the same memory; a longer one allocates once.
    expect((cache.views(3)[1][0].data as Float32Array).buffer).toBe(key.buffer);
    expect(cache.views(10)[0][0].dims[1]).toBe(10);
    expect(cache.capacity).toBe(10);
    expect(() => cache.write(0, 9, new Float32Array(12), new Float32Array(12))).toThrow(/passes the 10-row buffers/);
  });
});
