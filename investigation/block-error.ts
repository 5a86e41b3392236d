/**
 * Weight error of int4 block quantisation by block size, MLAS's min/max range against the clipping
 * search (quantize/rtn.ts `clip`), on seeded normal and Student-t weights (INVESTIGATION.md entry 35).
 * The figure is ‖W − dequant(quant(W))‖₂ / ‖W‖₂ over one [K, N] weight: what one linear's output
 * error is for isotropic inputs, the part of quantisation error that does not depend on a model.
 *
 *   npx tsc -p tsconfig.json && node dist/investigation/block-error.js [--k 1024] [--n 1024]
 */
import { Command } from 'commander';
import { rtnDequantize, rtnQuantize, type RtnParams } from '../quantize/rtn.js';

/** Deterministic uniform(0,1) stream (LCG; the figures only need to be reproducible). */
function uniforms(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s + 0.5) / 4294967296; };
}

function normals(seed: number): () => number {
  const u = uniforms(seed);
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Student-t with `nu` degrees of freedom: heavier tails than normal, as trained weights tend to have. */
function studentT(seed: number, nu: number): () => number {
  const g = normals(seed);
  return () => { let c = 0; for (let i = 0; i < nu; i++) { const x = g(); c += x * x; } return g() / Math.sqrt(c / nu); };
}

function relError(w: Float32Array, K: number, N: number, p: RtnParams): number {
  const d = rtnDequantize(rtnQuantize(w, 'KN', K, N, p), K, N, p);
  let e = 0;
  let n = 0;
  for (let i = 0; i < w.length; i++) { e += (d[i] - w[i]) ** 2; n += w[i] ** 2; }
  return Math.sqrt(e / n);
}

const opts = new Command().option('--k <n>', 'K (rows, the quantised axis)', '1024').option('--n <n>', 'N (columns)', '1024').parse().opts<{ k: string; n: string }>();
const K = Number(opts.k);
const N = Number(opts.n);
const dists: Array<[string, () => number]> = [['normal', normals(7)], ['student-t nu=5', studentT(8, 5)], ['student-t nu=3', studentT(9, 3)]];
console.log(`int4 asymmetric, W [${K}, ${N}]: relative weight error (min/max range -> clipping search)`);
console.log('| weights | block 32 | block 64 | block 128 | block 256 |');
console.log('|---|---|---|---|---|');
for (const [name, draw] of dists) {
  const w = Float32Array.from({ length: K * N }, () => 0.02 * draw());
  const cells = [32, 64, 128, 256].map((blockSize) => {
    const base: RtnParams = { bits: 4, blockSize, symmetric: false };
    return `${relError(w, K, N, base).toFixed(4)} -> ${relError(w, K, N, { ...base, clip: true }).toFixed(4)}`;
  });
  console.log(`| ${name} | ${cells.join(' | ')} |`);
}
