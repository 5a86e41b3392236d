import { describe, expect, it } from 'vitest';
import { Prng } from '../common/prng.js';
import { alignSequences, compareKey, placeWords, type AsrChunkUnits } from './align-placement.js';
import { splitWords } from './align-words.js';

const words = (text: string): string[] => splitWords(text, 'English');
const chunk = (text: string, seconds = 180): AsrChunkUnits => ({ units: words(text), seconds });

/** Textbook Levenshtein distance (full table): what the linear-space alignment must reach. */
function distance(a: Int32Array, b: Int32Array): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const cur = [i];
    for (let j = 1; j <= b.length; j += 1) cur[j] = Math.min(prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1), prev[j] + 1, cur[j - 1] + 1);
    prev = cur;
  }
  return prev[b.length];
}

/** Cost of an alignment given as a -> b indices: every unpaired unit and every unequal pair costs 1. */
function costOf(a: Int32Array, b: Int32Array, paired: Int32Array): number {
  let pairs = 0;
  let subs = 0;
  let last = -1;
  paired.forEach((j, i) => {
    if (j < 0) return;
    expect(j).toBeGreaterThan(last); // monotone, each b unit used once
    last = j;
    pairs += 1;
    if (a[i] !== b[j]) subs += 1;
  });
  return (a.length - pairs) + (b.length - pairs) + subs;
}

function expectNonDecreasing(xs: readonly number[]): void {
  for (let i = 1; i < xs.length; i += 1) expect(xs[i]).toBeGreaterThanOrEqual(xs[i - 1]);
}

describe('alignSequences (Hirschberg)', () => {
  it('reaches the edit distance of the full table on random sequences, also above the block size', () => {
    const prng = new Prng(7);
    const rand = (): number => prng.next();
    for (const [n, m, alphabet] of [[0, 5, 3], [5, 0, 3], [1, 40, 4], [40, 1, 4], [30, 45, 5], [400, 380, 6], [700, 260, 3]] as const) {
      const b = Int32Array.from({ length: m }, () => Math.floor(rand() * alphabet));
      // `a` a noisy copy of `b` (or random when b is empty), so there is structure to find.
      const a = Int32Array.from({ length: n }, (_, i) => (m > 0 && rand() < 0.7 ? b[Math.floor((i * m) / Math.max(1, n))] : Math.floor(rand() * alphabet)));
      const paired = alignSequences(a, b);
      expect(paired.length).toBe(n);
      expect(costOf(a, b, paired)).toBe(distance(a, b));
    }
  });

  it('pairs identical long sequences one to one', () => {
    const a = Int32Array.from({ length: 3000 }, (_, i) => i % 97);
    expect(Array.from(alignSequences(a, a.slice()))).toEqual(Array.from(a, (_, i) => i));
  });
});

describe('placeWords', () => {
  it('an exact transcript takes the ASR chunks as they are', () => {
    const chunks = [chunk('And so my fellow Americans,'), chunk('ask not what your country'), chunk('can do for you.', 12)];
    const p = placeWords(words('and so my fellow americans ask not what your country can do for you'), chunks);
    expect(p.chunkOf).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    expect(p.exactMatches).toBe(14);
    expect(p.matchedShare).toBe(1);
  });

  it('compares case-folded, NFKC, apostrophes aside', () => {
    expect(compareKey('Don’t'.replace('’', ''))).toBe(compareKey("don't"));
    expect(compareKey('ＡＢＣ')).toBe('abc');
    const p = placeWords(words('DON’T Stop'), [chunk("don't stop")]);
    expect(p.matchedShare).toBe(1);
  });

  it('ASR errors at a chunk boundary: substitutions keep their chunk', () => {
    const chunks = [chunk('the quick brwn'), chunk('focks jumpd over the lazy dog')];
    const p = placeWords(words('The quick brown fox jumped over the lazy dog.'), chunks);
    expect(p.chunkOf).toEqual([0, 0, 0, 1, 1, 1, 1, 1, 1]);
    expect(p.exactMatches).toBe(6);
    expect(p.matchedShare).toBeCloseTo(6 / 9, 12);
  });

  it('words the ASR missed take the chunk before them; words it made up place nothing', () => {
    // "very" and "indeed" are missing from the ASR; "um", "uh" are extra.
    const chunks = [chunk('it was a um cold morning'), chunk('uh the river had frozen over')];
    const user = words('It was a very cold morning. The river had frozen over, indeed.');
    const p = placeWords(user, chunks);
    expect(user).toEqual(['It', 'was', 'a', 'very', 'cold', 'morning', 'The', 'river', 'had', 'frozen', 'over', 'indeed']);
    // "very" may pair with "um" (a substitution) or stay unpaired: chunk 0 either way.
    expect(p.chunkOf).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    expect(p.exactMatches).toBe(10);
  });

  it('extra words at the start and the end go to the first and the last chunk', () => {
    const chunks = [chunk('once upon a time'), chunk('there lived a king'), chunk('who had three sons')];
    const p = placeWords(words('Chapter one, in which it begins: once upon a time there lived a king who had three sons. The end of chapter one'), chunks);
    const firstMatched = p.asrIndex.findIndex((j) => j >= 0);
    expect(firstMatched).toBeGreaterThan(0);
    expect(p.chunkOf.slice(0, firstMatched)).toEqual(new Array(firstMatched).fill(0));
    expect(p.chunkOf.slice(-5)).toEqual([2, 2, 2, 2, 2]);
    expect(p.exactMatches).toBe(12);
    expectNonDecreasing(p.chunkOf);
  });

  it('an empty ASR chunk between two heard ones gets the words between them', () => {
    const chunks = [chunk('one two three'), chunk('', 60), chunk('seven eight nine')];
    const p = placeWords(words('one two three four five six seven eight nine'), chunks);
    expect(p.chunkOf).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2]);
    expect(p.matchedShare).toBeCloseTo(6 / 9, 12);
  });

  it('several empty chunks share the unheard words by duration', () => {
    const chunks = [chunk('alpha'), chunk('', 120), chunk('', 40), chunk('omega')];
    const p = placeWords(words('alpha b c d e f g h i omega'), chunks);
    // 8 unheard units over 160 s: at 10, 30, ..., 150 s -> six in the 120 s chunk, two in the 40 s one.
    expect(p.chunkOf).toEqual([0, 1, 1, 1, 1, 1, 1, 2, 2, 3]);
  });

  it('no ASR text at all: the words are spread over the chunks by duration', () => {
    const p = placeWords(words('a b c d e f g h i j'), [chunk('', 180), chunk('', 20)]);
    expect(p.chunkOf).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(p.exactMatches).toBe(0);
    expect(p.matchedShare).toBe(0);
  });

  it('a chunk whose ASR text the transcript does not have gets no words', () => {
    const chunks = [chunk('the band starts to play'), chunk('la la la la la la la la la la la la'), chunk('and then the speech begins')];
    const p = placeWords(words('The band starts to play. And then the speech begins.'), chunks);
    expect(p.chunkOf).toEqual([0, 0, 0, 0, 0, 2, 2, 2, 2, 2]);
    expect(p.chunkOf).not.toContain(1);
    expect(p.matchedShare).toBe(1);
  });

  it('an unrelated transcript still places every word, in order, with a low share', () => {
    const chunks = [chunk('lorem ipsum dolor sit amet'), chunk('consectetur adipiscing elit sed do')];
    const p = placeWords(words('Four score and seven years ago our fathers brought forth'), chunks);
    expect(p.chunkOf.length).toBe(10);
    expectNonDecreasing(p.chunkOf);
    expect(p.chunkOf[0]).toBe(0);
    expect(p.chunkOf[9]).toBe(1);
    expect(p.matchedShare).toBe(0);
  });

  it('an empty transcript places nothing', () => {
    const p = placeWords([], [chunk('some words')]);
    expect(p).toEqual({ chunkOf: [], asrIndex: [], exactMatches: 0, matchedShare: 0 });
  });

  it('many chunks, random ASR noise: chunks non-decreasing, every exact match in its own chunk', () => {
    const prng = new Prng(11);
    const rand = (): number => prng.next();
    const vocab = words('alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau');
    const truth: Array<{ word: string; chunk: number }> = [];
    const chunks: AsrChunkUnits[] = [];
    for (let k = 0; k < 12; k += 1) {
      const units: string[] = [];
      for (let t = 0; t < 60; t += 1) {
        const word = vocab[Math.floor(rand() * vocab.length)];
        truth.push({ word, chunk: k });
        const r = rand();
        if (r < 0.08) continue; // the ASR dropped it
        units.push(r < 0.16 ? 'noise' : word);
        if (rand() < 0.05) units.push('extra');
      }
      chunks.push({ units, seconds: 180 });
    }
    const p = placeWords(truth.map((t) => t.word), chunks);
    expectNonDecreasing(p.chunkOf);
    expect(p.chunkOf.length).toBe(truth.length);
    const wrong = p.chunkOf.filter((c, i) => c !== truth[i].chunk).length;
    // Only words near a cut can land in the neighbouring chunk.
    expect(wrong / truth.length).toBeLessThan(0.05);
    expect(p.matchedShare).toBeGreaterThan(0.7);
  });
});
