import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { evaluateWer, normalizeForWer, readManifest, werOf, wordErrors } from './wer.js';

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const CLIPS = ['jfk', 'notld/5s_dont_worry_about_him', 'notld/8s_do_you_live_here', 'notld/12s_if_anything_should_try_to_break_in'];

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'qwen3-wer-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('normalizeForWer', () => {
  it('lower-cases, strips punctuation and accents, drops apostrophes, annotations and hesitations', () => {
    expect(normalizeForWer("And so, my fellow Americans: ask not!")).toEqual(['and', 'so', 'my', 'fellow', 'americans', 'ask', 'not']);
    expect(normalizeForWer("Don't  worry — it's 'em [laughter] (inaudible) um, OK?")).toEqual(['dont', 'worry', 'its', 'em', 'ok']);
    expect(normalizeForWer('Café au-lait\u2019s 42nd')).toEqual(['cafe', 'au', 'laits', '42nd']);
    expect(normalizeForWer('  ...  ')).toEqual([]);
  });
});

describe('wordErrors', () => {
  it('counts substitutions, deletions and insertions of a minimal alignment', () => {
    expect(wordErrors(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e'])).toEqual({ substitutions: 1, deletions: 0, insertions: 1, referenceWords: 4 });
    expect(wordErrors(['a', 'b', 'c'], ['b', 'c'])).toEqual({ substitutions: 0, deletions: 1, insertions: 0, referenceWords: 3 });
    expect(wordErrors([], ['a'])).toEqual({ substitutions: 0, deletions: 0, insertions: 1, referenceWords: 0 });
    expect(werOf(wordErrors(['a', 'b'], []))).toBe(1);
    expect(werOf(wordErrors([], []))).toBe(0);
    expect(werOf(wordErrors(['the', 'cat', 'sat'], ['a', 'cat', 'sat', 'down']))).toBeCloseTo(2 / 3, 12);
  });
});

describe('readManifest', () => {
  it('reads JSON (text or text_file) and TSV, resolving paths against the manifest folder', async () => {
    const json = join(dir, 'm.json');
    await writeFile(json, JSON.stringify([
      { audio: join(AUDIO, 'jfk.wav'), text_file: join(AUDIO, 'jfk.txt') },
      { audio: 'rel.wav', text: 'hello' },
    ]));
    const entries = await readManifest(json);
    expect(entries[0].reference).toBe((await readFile(join(AUDIO, 'jfk.txt'), 'utf8')).trim());
    expect(entries[1]).toEqual({ audio: join(dir, 'rel.wav'), reference: 'hello' });
    const tsv = join(dir, 'm.tsv');
    await writeFile(tsv, '# comment\nrel.wav\thello there\r\n\nother.wav\tbye\n');
    expect(await readManifest(tsv)).toEqual([
      { audio: join(dir, 'rel.wav'), reference: 'hello there' },
      { audio: join(dir, 'other.wav'), reference: 'bye' },
    ]);
  });

  it('names the file and the problem', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify([{ audio: 'x.wav' }]));
    await expect(readManifest(bad)).rejects.toThrow(/bad\.json: 0/);
    const badTsv = join(dir, 'bad.tsv');
    await writeFile(badTsv, 'x.wav hello\n');
    await expect(readManifest(badTsv)).rejects.toThrow(/bad\.tsv:1: expected "audio<TAB>reference text"/);
    await expect(readManifest(join(dir, 'none.json'))).rejects.toThrow(UserError);
  });
});

describe('evaluateWer on the shared clips', () => {
  async function manifest(): Promise<string> {
    const file = join(dir, 'shared.json');
    await writeFile(file, JSON.stringify(CLIPS.map((c) => ({ audio: join(AUDIO, `${c}.wav`), text_file: join(AUDIO, `${c}.txt`) }))));
    return file;
  }

  it('scores 0 when the hypothesis is the reference (test hook in place of the model)', async () => {
    const entries = await readManifest(await manifest());
    const byAudio = new Map(entries.map((e) => [e.audio, e.reference]));
    const report = await evaluateWer(entries, async (audio) => byAudio.get(audio)!.toUpperCase().replace(/[.,]/g, ''));
    expect(report.wer).toBe(0);
    expect(report.files.map((f) => f.wer)).toEqual([0, 0, 0, 0]);
    expect(report.referenceWords).toBe(entries.reduce((n, e) => n + normalizeForWer(e.reference).length, 0));
  });

  it('pools errors over files (empty hypotheses: every word deleted)', async () => {
    const entries = await readManifest(await manifest());
    let calls = 0;
    const report = await evaluateWer(entries, async (audio) => (audio.endsWith('jfk.wav') ? 'and so my fellow americans' : (calls += 1, '')));
    expect(calls).toBe(3);
    const jfkWords = normalizeForWer(entries[0].reference).length;
    expect(report.files[0].deletions).toBe(jfkWords - 5);
    expect(report.deletions).toBe(report.referenceWords - 5);
    expect(report.wer).toBeCloseTo((report.referenceWords - 5) / report.referenceWords, 12);
  });
});
