/**
 * The encoder's sinusoidal position table (official SinusoidsPositionEmbedding):
 * row p = [sin(p * inv_0), .., sin(p * inv_{c/2-1}), cos(p * inv_0), .., cos(p * inv_{c/2-1})]
 * with inv_i = exp(-i * ln(10000) / (c/2 - 1)).
 *
 * torch computes it in float32 (arange().float(), exp, product, sin/cos); every
 * intermediate is rounded to float32 here the same way, so the rows match the buffer
 * the official model adds. Only the first `rows` positions are ever used (positions
 * restart at 0 in every 100-frame chunk), so the graph stores just those.
 */
export function sinusoidTable(rows: number, channels: number, maxTimescale = 10000): Float32Array {
  if (channels % 2 !== 0 || channels < 4) throw new RangeError(`sinusoid channels must be even and >= 4, got ${channels}`);
  const half = channels / 2;
  const logIncrement = Math.log(maxTimescale) / (half - 1);
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(Math.exp(Math.fround(-logIncrement * i)));
  const table = new Float32Array(rows * channels);
  for (let p = 0; p < rows; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]);
      table[p * channels + i] = Math.sin(angle);
      table[p * channels + half + i] = Math.cos(angle);
    }
  }
  return table;
}
