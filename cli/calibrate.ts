import type { Command } from 'commander';
import { emitResult, intOption, progressFor, threadsOption, type CommonOptions } from './output.js';
import { DEFAULT_CALIBRATION_TOKENS, calibrateModelDir } from '../calibrate/calibrate.js';
import { UserError } from '../common/errors.js';
import { graphFileName } from '../model-dir/files.js';
import { detectLayout } from '../model-dir/layout.js';

interface CalibrateFlags extends CommonOptions {
  modelDir: string;
  audio: string[];
  output: string;
  maxNewTokens: number;
  threads?: number;
}

export function register(program: Command): void {
  program
    .command('calibrate')
    .description('run the float model on calibration audio and record, for every RMSNorm feeding quantised linears, the mean |activation| per channel (stats.json for `quantize --awq`)')
    .requiredOption('--model-dir <dir>', 'exported float model directory (encoder.onnx, decoder_init.onnx, decoder_step.onnx, embed_tokens.bin, config.json, tokenizer)')
    .requiredOption('--audio <file|dir...>', 'WAV files or directories (searched recursively for *.wav)')
    .requiredOption('--output <stats.json>', 'statistics file to write')
    .option('--max-new-tokens <n>', 'greedy decoding steps per file after the prefill', intOption('--max-new-tokens'), DEFAULT_CALIBRATION_TOKENS)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', threadsOption())
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (flags: CalibrateFlags) => {
      // The statistics and the model identity they carry are of the split layout's decoder graphs.
      if (await detectLayout(flags.modelDir) === 'sherpa-onnx') {
        throw new UserError(`--model-dir ${flags.modelDir}: a sherpa-onnx layout directory; calibrate taps the split layout's ${graphFileName('decoder_init')} and ${graphFileName('decoder_step')} and does not run this layout yet`);
      }
      const result = await calibrateModelDir({
        modelDir: flags.modelDir,
        audio: flags.audio,
        output: flags.output,
        maxNewTokens: flags.maxNewTokens,
        threads: flags.threads,
        progress: progressFor(flags),
      });
      emitResult(flags, result, () => `wrote ${result.output}: ${result.norms} norms from ${result.files} files `
        + `(${result.prefillPositions} prefill + ${result.decodePositions} decode positions)`);
    });
}
