import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { tinyModelDir } from '../fixtures/test-support.js';
import { register } from './transcribe.js';
import { timestampSegmentSeconds } from './transcribe-timestamps.js';
import { runCommand } from './test-support.js';

const SHORT = fileURLToPath(new URL('../../shared/audio/notld/5s_dont_worry_about_him.wav', import.meta.url));

const run = (args: string[]): Promise<string> => runCommand(register, 'transcribe', args);

let asrDir: string;
beforeAll(async () => { asrDir = await tinyModelDir(); });

describe('transcribe --timestamps: bad input gets one line before any transcription', () => {
  it('--timestamps and --aligner go together', async () => {
    await expect(run(['--model-dir', asrDir, '--timestamps', SHORT])).rejects.toThrow(/--timestamps needs --aligner <dir>/);
    await expect(run(['--model-dir', asrDir, '--aligner', asrDir, SHORT])).rejects.toThrow(/--aligner is only used with --timestamps/);
  });

  it('an ASR directory as --aligner is named', async () => {
    await expect(run(['--model-dir', asrDir, '--timestamps', '--aligner', asrDir, SHORT]))
      .rejects.toThrow(/is an ASR model directory, not a forced aligner/);
  });

  it('segments for alignment are at most 180 s, as the official transcribe cuts them', () => {
    expect(timestampSegmentSeconds({ timestamps: true, alignerVariant: 'fp32' }, 1200)).toBe(180);
    expect(timestampSegmentSeconds({ timestamps: true, alignerVariant: 'fp32' }, 60)).toBe(60);
    expect(timestampSegmentSeconds({ alignerVariant: 'fp32' }, 1200)).toBe(1200);
  });
});
