/**
 * Which audio chunk each word of a user's transcript falls in, for aligning audio longer than one
 * aligner pass (`align --asr`): the chunks are transcribed by an ASR model, and the user's units
 * are matched to the ASR's units by a word-level edit distance (match / substitute / insert /
 * delete, all non-match steps cost 1, monotone). A user unit aligned to an ASR unit (a match or a
 * substitution) takes that unit's chunk; the others take their neighbours' (placeWords).
 *
 * Memory: the alignment is Hirschberg's (linear space, O(n*m) time): hours of audio are tens of
 * thousands of words, and a full n*m traceback for 30k x 30k words would be 900 M cells. A band
 * around the diagonal would be cheaper in time but silently wrong when the two sides drift apart by
 * more than the band (an ASR chunk that came out empty, a transcript with a long preface); the
 * chunk-by-chunk alternative needs a guess of where each chunk's words start. Hirschberg is exact
 * whatever the drift; 30k x 30k is about 2 x 10^9 integer steps (8 s and 51 MiB RSS on a 2-core
 * box, random words with 12 % ASR noise), little next to transcribing hours of audio.
 */

/** One chunk of the audio: the ASR's units for it and its duration (spreads unmatched words, below). */
export interface AsrChunkUnits { units: readonly string[]; seconds: number }

export interface WordPlacement {
  /** Per user unit, its chunk index (non-decreasing). */
  chunkOf: number[];
  /** Per user unit, the index of the ASR unit it was aligned to (all chunks' units concatenated), or -1. */
  asrIndex: number[];
  /** User units equal (compareKey) to the ASR unit they were aligned to. */
  exactMatches: number;
  /** exactMatches / user units (0 for an empty transcript). */
  matchedShare: number;
}

/**
 * What two units are compared by: NFKC, lower-cased, apostrophes dropped (the splitter keeps only
 * the ASCII one, so "don't" and "don’t" would otherwise differ as "don't" / "dont").
 */
export function compareKey(unit: string): string {
  return unit.normalize('NFKC').toLowerCase().replace(/'/g, '');
}

/** Below this many DP cells a block is solved with a full table and traceback (fewer recursion levels). */
const BASE_CELLS = 1 << 16;

/**
 * A minimum-cost monotone alignment of `a` to `b` (integer ids; equal ids match at cost 0,
 * substitution, insertion and deletion cost 1). Returns, per element of `a`, the index in `b` it is
 * aligned to (match or substitution) or -1. Linear memory (Hirschberg): O(n + m) apart from
 * base blocks of at most BASE_CELLS cells (or 2 x (m + 1) when one element of `a` is left).
 */
export function alignSequences(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length).fill(-1);
  const rowA = new Int32Array(b.length + 1);
  const rowB = new Int32Array(b.length + 1);
  const fwd = new Int32Array(b.length + 1);
  const bwd = new Int32Array(b.length + 1);
  // An explicit stack instead of recursion: blocks to solve, [aLo, aHi, bLo, bHi].
  const stack: Array<[number, number, number, number]> = [[0, a.length, 0, b.length]];
  while (stack.length > 0) {
    const [aLo, aHi, bLo, bHi] = stack.pop() as [number, number, number, number];
    const n = aHi - aLo;
    const m = bHi - bLo;
    if (n === 0 || m === 0) continue; // nothing to pair: the `a` units stay -1
    if (n === 1 || n * m <= BASE_CELLS) {
      solveBlock(a, b, aLo, aHi, bLo, bHi, out);
      continue;
    }
    const mid = aLo + (n >> 1);
    lastRowForward(a, b, aLo, mid, bLo, bHi, rowA, rowB, fwd);
    lastRowBackward(a, b, mid, aHi, bLo, bHi, rowA, rowB, bwd);
    // The first split point of least total cost (deterministic).
    let split = 0;
    let best = Infinity;
    for (let j = 0; j <= m; j += 1) {
      const cost = fwd[j] + bwd[j];
      if (cost < best) { best = cost; split = j; }
    }
    stack.push([mid, aHi, bLo + split, bHi], [aLo, mid, bLo, bLo + split]);
  }
  return out;
}

/** out[j] = cost of aligning a[aLo, aHi) with b[bLo, bLo + j), for j = 0..m. */
function lastRowForward(a: Int32Array, b: Int32Array, aLo: number, aHi: number, bLo: number, bHi: number, prev: Int32Array, cur: Int32Array, out: Int32Array): void {
  const m = bHi - bLo;
  for (let j = 0; j <= m; j += 1) prev[j] = j;
  let p = prev;
  let c = cur;
  for (let i = aLo; i < aHi; i += 1) {
    const ai = a[i];
    // The previous row's j-1 and this row's j-1 carried in locals (the hot loop of the whole module).
    let diagBase = p[0];
    let left = diagBase + 1;
    c[0] = left;
    for (let j = 1; j <= m; j += 1) {
      const above = p[j];
      let v = diagBase + (ai === b[bLo + j - 1] ? 0 : 1);
      if (above + 1 < v) v = above + 1;
      if (left + 1 < v) v = left + 1;
      c[j] = v;
      left = v;
      diagBase = above;
    }
    const t = p; p = c; c = t;
  }
  for (let j = 0; j <= m; j += 1) out[j] = p[j];
}

/** out[j] = cost of aligning a[aLo, aHi) with b[bLo + j, bHi), for j = 0..m. */
function lastRowBackward(a: Int32Array, b: Int32Array, aLo: number, aHi: number, bLo: number, bHi: number, prev: Int32Array, cur: Int32Array, out: Int32Array): void {
  const m = bHi - bLo;
  // Index k here is the suffix length m - j.
  for (let k = 0; k <= m; k += 1) prev[k] = k;
  let p = prev;
  let c = cur;
  for (let i = aHi - 1; i >= aLo; i -= 1) {
    const ai = a[i];
    let diagBase = p[0];
    let left = diagBase + 1;
    c[0] = left;
    for (let k = 1; k <= m; k += 1) {
      const above = p[k];
      let v = diagBase + (ai === b[bHi - k] ? 0 : 1);
      if (above + 1 < v) v = above + 1;
      if (left + 1 < v) v = left + 1;
      c[k] = v;
      left = v;
      diagBase = above;
    }
    const t = p; p = c; c = t;
  }
  for (let j = 0; j <= m; j += 1) out[j] = p[m - j];
}

/** Full table and traceback of one small block (diagonal steps preferred on ties). */
function solveBlock(a: Int32Array, b: Int32Array, aLo: number, aHi: number, bLo: number, bHi: number, out: Int32Array): void {
  const n = aHi - aLo;
  const m = bHi - bLo;
  const w = m + 1;
  const cost = new Int32Array((n + 1) * w);
  for (let j = 0; j <= m; j += 1) cost[j] = j;
  for (let i = 1; i <= n; i += 1) {
    const ai = a[aLo + i - 1];
    cost[i * w] = i;
    for (let j = 1; j <= m; j += 1) {
      const diag = cost[(i - 1) * w + j - 1] + (ai === b[bLo + j - 1] ? 0 : 1);
      const up = cost[(i - 1) * w + j] + 1;
      const left = cost[i * w + j - 1] + 1;
      cost[i * w + j] = Math.min(diag, up, left);
    }
  }
  let i = n;
  let j = m;
  while (i > 0 && j > 0) {
    const here = cost[i * w + j];
    if (here === cost[(i - 1) * w + j - 1] + (a[aLo + i - 1] === b[bLo + j - 1] ? 0 : 1)) {
      out[aLo + i - 1] = bLo + j - 1;
      i -= 1; j -= 1;
    } else if (here === cost[(i - 1) * w + j] + 1) {
      i -= 1; // a user unit the ASR did not hear
    } else {
      j -= 1; // an ASR unit the transcript does not have
    }
  }
}

/**
 * The chunk of every user unit. Aligned units (match or substitution) take their ASR unit's chunk.
 * A run of unaligned units takes the chunk of the aligned unit before it (the one after, at the
 * start), except where the aligned units around it leave whole chunks without any aligned unit
 * (an ASR chunk that came out empty or unlike the transcript, or no ASR text at all): then the run is
 * spread over those chunks in proportion to their durations, rather than piled onto a neighbour
 * that already has its own words. Chunk indices are non-decreasing by construction.
 */
export function placeWords(userUnits: readonly string[], chunks: readonly AsrChunkUnits[]): WordPlacement {
  if (chunks.length === 0) throw new Error('placeWords: no chunks');
  const ids = new Map<string, number>();
  const idOf = (u: string): number => {
    const key = compareKey(u);
    let id = ids.get(key);
    if (id === undefined) { id = ids.size; ids.set(key, id); }
    return id;
  };
  const user = Int32Array.from(userUnits, idOf);
  const asrChunk: number[] = [];
  const asr: number[] = [];
  chunks.forEach((c, k) => { for (const u of c.units) { asr.push(idOf(u)); asrChunk.push(k); } });
  const asrIds = Int32Array.from(asr);
  const pairedWith = alignSequences(user, asrIds);

  const chunkOf = new Array<number>(user.length).fill(-1);
  let exactMatches = 0;
  for (let i = 0; i < user.length; i += 1) {
    const j = pairedWith[i];
    if (j < 0) continue;
    chunkOf[i] = asrChunk[j];
    if (asrIds[j] === user[i]) exactMatches += 1;
  }
  let i = 0;
  while (i < user.length) {
    if (chunkOf[i] >= 0) { i += 1; continue; }
    let end = i;
    while (end < user.length && chunkOf[end] < 0) end += 1;
    const before = i > 0 ? chunkOf[i - 1] : -1;
    const after = end < user.length ? chunkOf[end] : chunks.length;
    if (after - before > 1) {
      spreadRun(chunkOf, i, end, before + 1, after, chunks);
    } else {
      chunkOf.fill(before >= 0 ? before : after, i, end);
    }
    i = end;
  }
  return {
    chunkOf, asrIndex: Array.from(pairedWith), exactMatches,
    matchedShare: user.length > 0 ? exactMatches / user.length : 0,
  };
}

/** Units [from, to) over chunks [first, last) by duration: unit t at the (t + 0.5) / r point of the chunks' total time. */
function spreadRun(chunkOf: number[], from: number, to: number, first: number, last: number, chunks: readonly AsrChunkUnits[]): void {
  const weights = chunks.slice(first, last).map((c) => Math.max(0, c.seconds));
  const total = weights.reduce((s, x) => s + x, 0);
  const w = total > 0 ? weights : weights.map(() => 1);
  const sum = total > 0 ? total : weights.length;
  const r = to - from;
  let k = 0;
  let edge = w[0];
  for (let t = 0; t < r; t += 1) {
    const at = ((t + 0.5) / r) * sum;
    while (at > edge && k < w.length - 1) { k += 1; edge += w[k]; }
    chunkOf[from + t] = first + k;
  }
}
