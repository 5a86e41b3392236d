import { Option, type Command } from 'commander';
import { UserError } from '../common/errors.js';
import { generateCheckpoint } from '../fixtures/generate.js';
import { PRESET_NAMES, isPresetName } from '../fixtures/presets.js';
import { CHECKPOINT_FORMATS, type CheckpointFormat } from '../checkpoint/tensor-names.js';
import { emitResult, intOption, progressFor } from './output.js';

interface FixturesOptions {
  preset: string;
  seed: number;
  output: string;
  force?: boolean;
  outlierChannels: number;
  lmHead?: boolean;
  format: CheckpointFormat;
  json?: boolean;
  quiet?: boolean;
}

/** `qwen3-onnx fixtures`: writes a synthetic Qwen3-ASR checkpoint (tests, benchmarks). */
export function register(program: Command): void {
  program
    .command('fixtures')
    .description('write a synthetic Qwen3-ASR checkpoint (real layout and tensor names, seeded random BF16 weights)')
    .addOption(new Option('--preset <name>', 'model size').choices([...PRESET_NAMES]).makeOptionMandatory())
    .requiredOption('--output <dir>', 'checkpoint directory to create (absent or empty)')
    .option('--seed <n>', 'seed of the random weights', intOption('--seed'), 0)
    .option('--outlier-channels <n>', 'plant N activation-outlier hidden channels (decoder RMSNorm weights x20)', intOption('--outlier-channels'), 0)
    .addOption(new Option('--format <layout>', 'checkpoint layout: the original (thinker.* tensors) or the transformers-native -hf one')
      .choices([...CHECKPOINT_FORMATS]).default('original'))
    .option('--lm-head', 'store the lm_head weight, a copy of the tied embed_tokens, as the real checkpoints do (the default)')
    .option('--no-lm-head', 'leave the tied lm_head weight out')
    .option('--force', 'replace a non-empty output directory')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing on success')
    .action(async (opts: FixturesOptions) => {
      if (!isPresetName(opts.preset)) throw new UserError(`--preset must be one of ${PRESET_NAMES.join(', ')}`);
      if (opts.seed < 0 || opts.seed > 0xffffffff) throw new UserError(`--seed must be from 0 to 4294967295, got ${opts.seed}`);
      const result = await generateCheckpoint({
        preset: opts.preset, seed: opts.seed, output: opts.output, force: opts.force,
        outlierChannels: opts.outlierChannels, lmHead: opts.lmHead, format: opts.format, progress: progressFor(opts),
      });
      emitResult(opts, result, () => {
        const gb = (result.bytes / 1e9).toFixed(result.bytes >= 1e9 ? 2 : 4);
        const outliers = result.outlierChannels.length ? `, outlier channels ${result.outlierChannels.join(',')}` : '';
        return `wrote ${result.preset} ${result.format === 'hf' ? '-hf ' : ''}checkpoint (seed ${result.seed}, ${result.tensors} tensors, ${result.files.length} files, ${gb} GB${outliers}) to ${result.output}`;
      });
    });
}
