import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transcribeFile } from '../runtime/decode.js';
import { AsrModel } from '../runtime/session.js';
import { normalizeForWer, type WerReport } from '../runtime/wer.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { register } from './wer.js';
import { runCommand } from './test-support.js';

const AUDIO = fileURLToPath(new URL('../../shared/audio/', import.meta.url));
const CLIPS = ['jfk', 'notld/5s_dont_worry_about_him'];

const run = (args: string[]): Promise<string> => runCommand(register, 'wer', args);

let modelDir: string;
let scratch: string;
beforeAll(async () => {
  modelDir = await tinyModelDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-cli-wer-'));
});
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

describe('qwen3-onnx wer', () => {
  it('scores the model transcripts of a manifest against the references', async () => {
    const manifest = join(scratch, 'm.json');
    await writeFile(manifest, JSON.stringify(CLIPS.map((c) => ({ audio: join(AUDIO, `${c}.wav`), text_file: join(AUDIO, `${c}.txt`) }))));
    const report = JSON.parse(await run(['--model-dir', modelDir, '--manifest', manifest, '--max-new-tokens', '4', '--threads', '1', '--json'])) as WerReport;
    expect(report.files.length).toBe(2);
    // The hypotheses are what transcribe produces with the same options.
    const model = await AsrModel.load(modelDir, { threads: 1 });
    try {
      for (const [i, c] of CLIPS.entries()) {
        expect(report.files[i].hypothesis).toBe((await transcribeFile(model, join(AUDIO, `${c}.wav`), { maxNewTokens: 4 })).text);
      }
    } finally {
      await model.release();
    }
    const words = report.files.map((f) => normalizeForWer(f.reference).length);
    expect(report.files.map((f) => f.referenceWords)).toEqual(words);
    expect(report.referenceWords).toBe(words[0] + words[1]);
    expect(report.wer).toBeCloseTo((report.substitutions + report.deletions + report.insertions) / report.referenceWords, 12);
    // Four random-weight tokens cannot transcribe 20+ words.
    expect(report.wer).toBeGreaterThan(0.8);
    const human = await run(['--model-dir', modelDir, '--manifest', manifest, '--max-new-tokens', '4']);
    expect(human).toMatch(/^WER \d+\.\d\d% \(\d+ sub, \d+ del, \d+ ins \/ \d+ words, 2 files\)$/m);
  });

  it('names a bad manifest', async () => {
    const manifest = join(scratch, 'bad.tsv');
    await writeFile(manifest, 'no tab here\n');
    await expect(run(['--model-dir', modelDir, '--manifest', manifest])).rejects.toThrow(/bad\.tsv:1: expected/);
  });
});
