import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../common/errors.js';
import { tinyModelDir } from '../fixtures/test-support.js';
import { register } from './align.js';
import { runCommand } from './test-support.js';

const SHORT = fileURLToPath(new URL('../../shared/audio/notld/5s_dont_worry_about_him.wav', import.meta.url));

const run = (args: string[]): Promise<string> => runCommand(register, 'align', args);

let asrDir: string;
let scratch: string;
beforeAll(async () => {
  asrDir = await tinyModelDir();
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-cli-align-'));
});
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

describe('qwen3-onnx align: bad input gets one line', () => {
  it('an empty transcript, or one with nothing alignable, is refused before any model is read', async () => {
    const missing = join(scratch, 'no-such-dir');
    await expect(run(['--model-dir', missing, '--language', 'English', '--text', '  \n ', SHORT])).rejects.toThrow(/^--text is empty$/);
    await expect(run(['--model-dir', missing, '--language', 'English', '--text', '... — !?', SHORT])).rejects.toThrow(/--text has nothing to align \(no letters or numbers\)/);
    const punct = join(scratch, 'punct.txt');
    await writeFile(punct, '\uFEFF-- ,, ..\n');
    await expect(run(['--model-dir', missing, '--language', 'Chinese', '--text-file', punct, SHORT])).rejects.toThrow(/--text-file .*punct\.txt has nothing to align/);
    await expect(run(['--model-dir', missing, '--language', 'English', '--text-file', join(scratch, 'nope.txt'), SHORT])).rejects.toThrow(/cannot read .*nope\.txt: no such file/);
  });

  it('exactly one of --text and --text-file; one output format; a supported language', async () => {
    await expect(run(['--model-dir', asrDir, '--language', 'English', SHORT])).rejects.toThrow(/exactly one of --text and --text-file/);
    await expect(run(['--model-dir', asrDir, '--language', 'English', '--text', 'a', '--text-file', 'x', SHORT])).rejects.toThrow(/exactly one of --text and --text-file/);
    await expect(run(['--model-dir', asrDir, '--language', 'English', '--text', 'a', '--srt', '--vtt', SHORT])).rejects.toThrow(/choose one output format/);
    await expect(run(['--model-dir', asrDir, '--language', 'Klingon', '--text', 'a', SHORT])).rejects.toThrow(/unsupported language "Klingon"/);
    await expect(run(['--model-dir', asrDir, '--text', 'a', SHORT])).rejects.toThrow(CommanderError);
  });

  it('an ASR model directory, a directory without config.json and a missing audio file are named', async () => {
    const asr = run(['--model-dir', asrDir, '--language', 'English', '--text', 'hello world', SHORT]);
    await expect(asr).rejects.toThrow(UserError);
    await expect(run(['--model-dir', asrDir, '--language', 'English', '--text', 'hello world', SHORT]))
      .rejects.toThrow(/is an ASR model directory, not a forced aligner \(config\.json has no model_kind "forced_aligner"\)/);
    await expect(run(['--model-dir', scratch, '--language', 'English', '--text', 'hello', SHORT])).rejects.toThrow(/cannot read .*config\.json: no such file/);
    await expect(run(['--model-dir', asrDir, '--language', 'English', '--text', 'hello', join(scratch, 'none.wav')])).rejects.toThrow(/none\.wav/);
  });
});
