import type { Command } from 'commander';
import { emitResult, intOption, progressFor, threadsOption, type CommonOptions } from './output.js';
import { DEFAULT_CALIBRATION_TOKENS, calibrateModelDir } from '../calibrate/calibrate.js';

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
    .requiredOption('--model-dir <dir>', 'exported float model directory, either layout (split: encoder.onnx, decoder_init.onnx, decoder_step.onnx, embed_tokens.bin; sherpa-onnx: conv_frontend.onnx, encoder.onnx, decoder.onnx; config.json, tokenizer)')
    .requiredOption('--audio <file|dir...>', 'WAV files or directories (searched recursively for *.wav)')
    .requiredOption('--output <stats.json>', 'statistics file to write')
    .option('--max-new-tokens <n>', 'greedy decoding steps per file after the prefill', intOption('--max-new-tokens'), DEFAULT_CALIBRATION_TOKENS)
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)', threadsOption())
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (flags: CalibrateFlags) => {
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
