import { Option, type Command } from 'commander';
import { parseRecipeEntries } from '../quantize/recipe.js';
import { parseCompressionLevel, type CompressionLevel } from '../package/archive-writer.js';
import { InvalidArgumentError } from 'commander';
import { buildRelease, parseLayouts, parseVariants } from '../package/build.js';
import type { DecoderAttention } from '../graph-builder/decoder.js';
import { ATTENTION_HELP, attentionOption } from './export.js';
import { emitResult, intOption, progressFor, threadsOption, type CommonOptions } from './output.js';

interface BuildCliOptions extends CommonOptions {
  model: string; revision?: string; output: string; variants: string; awq?: string; awqAlpha?: number;
  compareAudio: string[]; minTop1: number; minCosine: number; compareMaxTokens: number; level: CompressionLevel;
  sizeLabel?: string; threads?: number; attention: DecoderAttention; layout: string; preset: 'decoders' | 'whole'; recipe?: string[];
}

function floatOption(flag: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number, got "${value}"`);
    return n;
  };
}

export function register(program: Command): void {
  program
    .command('build')
    .description('one shot: export, fuse, quantize, check int4 against fp32, and package every variant')
    .option('--model <id|dir>', 'Hugging Face repo id or local checkpoint directory', 'Qwen/Qwen3-ASR-0.6B')
    .option('--revision <rev>', 'hub branch, tag or commit')
    .requiredOption('--output <dir>', 'build directory: model/, dist/ and build-record.json go here')
    .option('--variants <list>', 'comma-separated variants to package', 'fp32,int4')
    .option('--attention <mode>', ATTENTION_HELP, attentionOption, 'onnx' as DecoderAttention)
    .option('--layout <list>', 'model directory layout(s) to build and package, comma-separated: split (the contract), sherpa-onnx, or split,sherpa-onnx for both', 'split')
    .addOption(new Option('--preset <name>', 'what the quantized variants quantise: whole (encoder, decoders, int4 token lookup sharing the lm_head\'s table) or decoders (decoders only)').choices(['whole', 'decoders']).default('whole'))
    .option('--recipe <component=spec...>', 'per-component overrides of the preset, as quantize takes them (e.g. encoder=int8)')
    .option('--awq <stats.json>', 'AWQ-smooth quantized variants with these calibration statistics')
    .option('--awq-alpha <a>', 'AWQ smoothing strength', floatOption('--awq-alpha'))
    .option('--compare-audio <wav...>', 'audio for the quantized-vs-fp32 check (default: a built-in synthetic clip)', [])
    .option('--min-top1 <x>', 'refuse to package below this teacher-forced top-1 agreement', floatOption('--min-top1'), 0.9)
    .option('--min-cosine <x>', 'refuse to package below this mean logit cosine similarity', floatOption('--min-cosine'), 0.99)
    .option('--compare-max-tokens <n>', 'greedy tokens per file in the check', intOption('--compare-max-tokens'), 32)
    .option('--level <level>', 'compression: huffman (fast, default) or a zlib level 0-9', parseCompressionLevel, 'huffman' as CompressionLevel)
    .option('--size-label <label>', 'size in archive names (default from the config)')
    .option('--threads <n>', 'onnxruntime intra-op threads', threadsOption())
    .option('--json', 'print the build record as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (opts: BuildCliOptions) => {
      const { record, packages } = await buildRelease({
        model: opts.model, ...(opts.revision !== undefined ? { revision: opts.revision } : {}), output: opts.output,
        variants: parseVariants(opts.variants), layouts: parseLayouts(opts.layout), preset: opts.preset, recipe: parseRecipeEntries(opts.recipe ?? []), attention: opts.attention, awq: opts.awq, awqAlpha: opts.awqAlpha,
        compareAudio: opts.compareAudio, minTop1: opts.minTop1, minCosine: opts.minCosine,
        compareMaxTokens: opts.compareMaxTokens, level: opts.level, sizeLabel: opts.sizeLabel,
        threads: opts.threads, progress: progressFor(opts),
      });
      emitResult(opts, record, () => packages.map((p) => `${p.archive}  ${p.manifest.archive.sha256}`).join('\n'));
    });
}
