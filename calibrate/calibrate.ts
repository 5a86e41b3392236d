import { readdir, stat } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { UserError, fsError } from '../common/errors.js';
import { sha256File } from '../common/hash.js';
import { silentProgress, type Progress } from '../common/progress.js';
import { buildPrompt } from '../runtime/prompt.js';
import { Tokenizer } from '../runtime/tokenizer.js';
import { AudioEncoder } from './audio-features.js';
import { DecoderCalibrator, type PassCounts } from './decoder-calibrator.js';
import { modelIdentity } from './model-identity.js';
import { SherpaCalibrator } from './sherpa-calibrator.js';
import { STATS_FORMAT, STATS_VERSION, writeStatsFile, type CalibrationFileRecord, type NormStats, type StatsFile } from './stats-file.js';
import { readModelConfig, type OutputConfig } from '../model-dir/config.js';
import { detectLayout } from '../model-dir/layout.js';
import { loadAudio } from '../runtime/audio.js';

/**
 * `calibrate`: runs the float model of a model directory on calibration audio
 * (encoder -> decoder_init -> greedy decoder_step, as a consumer would; on a sherpa-onnx layout
 * directory conv_frontend -> encoder -> decoder, sherpa-calibrator.ts) and writes stats.json
 * with the mean |activation| per channel of every norm output that feeds quantised linears.
 * Nothing in the model directory is written.
 */

export interface CalibrateOptions {
  modelDir: string;
  /** WAV files and/or directories (searched recursively for *.wav). */
  audio: string[];
  /** stats.json to write. */
  output: string;
  /** Greedy decoding steps per file after the prefill (default 64). */
  maxNewTokens?: number;
  threads?: number;
  progress?: Progress;
}

export interface CalibrateResult {
  output: string;
  files: number;
  prefillPositions: number;
  decodePositions: number;
  norms: number;
}

export const DEFAULT_CALIBRATION_TOKENS = 64;

export async function calibrateModelDir(opts: CalibrateOptions): Promise<CalibrateResult> {
  const progress = opts.progress ?? silentProgress;
  const modelDir = resolve(opts.modelDir);
  const maxNewTokens = opts.maxNewTokens ?? DEFAULT_CALIBRATION_TOKENS;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new UserError(`--max-new-tokens must be a non-negative integer, got ${maxNewTokens}`);
  const files = await listAudioFiles(opts.audio);
  await assertAudioReadable(files);
  const layout = await detectLayout(modelDir);
  const { config } = await readModelConfig(modelDir);
  const identity = await modelIdentity(modelDir);
  let calibrator: FileCalibrator | undefined;
  try {
    calibrator = layout === 'sherpa-onnx'
      ? await SherpaCalibrator.open(modelDir, { threads: opts.threads })
      : await openSplitCalibrator(modelDir, config, { threads: opts.threads });
    const records: CalibrationFileRecord[] = [];
    for (const [i, file] of files.entries()) {
      progress.update(`calibrating ${basename(file.path)}`, i, files.length);
      const pass = await calibrator.calibrateFile(file.path, maxNewTokens);
      records.push({
        name: file.name, sha256: await sha256File(file.path), audio_tokens: pass.audioTokens,
        prefill_positions: pass.prefillPositions, decode_positions: pass.decodePositions,
      });
      progress.update(`calibrating ${basename(file.path)}`, i + 1, files.length);
    }
    progress.finish();
    const stats: StatsFile = {
      format: STATS_FORMAT,
      version: STATS_VERSION,
      model: identity,
      calibration: {
        max_new_tokens: maxNewTokens,
        prefill_positions: records.reduce((n, r) => n + r.prefill_positions, 0),
        decode_positions: records.reduce((n, r) => n + r.decode_positions, 0),
        files: records,
      },
      norms: calibrator.normStats(),
    };
    const output = resolve(opts.output);
    await writeStatsFile(output, stats);
    return {
      output, files: records.length, prefillPositions: stats.calibration.prefill_positions,
      decodePositions: stats.calibration.decode_positions, norms: Object.keys(stats.norms).length,
    };
  } finally {
    progress.finish();
    await calibrator?.release();
  }
}

/** One layout's model run on one calibration file at a time, accumulating its decoder's taps. */
interface FileCalibrator {
  calibrateFile(path: string, maxNewTokens: number): Promise<PassCounts & { audioTokens: number }>;
  normStats(): Record<string, NormStats>;
  release(): Promise<void>;
}

/** The split layout: encoder.onnx, then decoder_init + greedy decoder_step on tapped copies. */
async function openSplitCalibrator(modelDir: string, config: OutputConfig, opts: { threads?: number }): Promise<FileCalibrator> {
  const tokenizer = await Tokenizer.load(modelDir);
  const encoder = await AudioEncoder.open(modelDir, config.decoder.hidden_size, opts);
  let decoder: DecoderCalibrator;
  try {
    decoder = await DecoderCalibrator.open(modelDir, config, opts);
  } catch (err) {
    await encoder.release();
    throw err;
  }
  return {
    async calibrateFile(path, maxNewTokens) {
      const { features, audioTokens } = await encoder.encodeFile(path);
      const prompt = buildPrompt(tokenizer, { audioTokens });
      return { audioTokens, ...(await decoder.run(prompt, features, maxNewTokens)) };
    },
    normStats: () => decoder.normStats(),
    release: async () => { await decoder.release(); await encoder.release(); },
  };
}

/**
 * Reads every calibration file before any model work and names every one that cannot be read, in
 * one line: statistics from a silently smaller set would not be what was asked for.
 */
async function assertAudioReadable(files: readonly AudioFile[]): Promise<void> {
  const bad: string[] = [];
  for (const f of files) {
    try {
      await loadAudio(f.path);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      bad.push(err.message.includes(f.path) ? err.message : `${f.path}: ${err.message}`);
    }
  }
  if (bad.length === 1) throw new UserError(bad[0]);
  if (bad.length > 1) throw new UserError(`${bad.length} of ${files.length} audio files cannot be read: ${bad.join('; ')}`);
}

export interface AudioFile {
  path: string;
  /** Name recorded in stats.json: relative to the directory argument, or the file's base name. */
  name: string;
}

/** Expands files and directories (recursively, *.wav, sorted) into a list of distinct files. */
export async function listAudioFiles(args: string[]): Promise<AudioFile[]> {
  if (args.length === 0) throw new UserError('--audio: give at least one WAV file or directory');
  const out: AudioFile[] = [];
  const seen = new Set<string>();
  const add = (path: string, name: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    out.push({ path, name });
  };
  for (const arg of args) {
    const p = resolve(arg);
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      throw fsError('--audio: cannot read', p, err);
    }
    if (!isDir) { add(p, basename(p)); continue; }
    const found = await wavsUnder(p);
    if (found.length === 0) throw new UserError(`--audio: no .wav files under ${p}`);
    for (const f of found) add(f, relative(p, f).split('\\').join('/'));
  }
  return out;
}

async function wavsUnder(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw fsError('--audio: cannot read', dir, err);
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await wavsUnder(p)));
    else if (e.isFile() && e.name.toLowerCase().endsWith('.wav')) out.push(p);
  }
  return out;
}
