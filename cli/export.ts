import { InvalidArgumentError, type Command } from 'commander';
import { UserError } from '../common/errors.js';
import { DECODER_ATTENTIONS, type DecoderAttention } from '../graph-builder/decoder.js';
import { exportModel, type EmbedDtype } from '../graph-builder/export.js';
import { emitResult, progressFor, type CommonOptions } from './output.js';
import { LAYOUTS, parseLayout, type Layout } from '../model-dir/layout.js';

export const LAYOUT_HELP = `model directory layout: ${LAYOUTS.join(' or ')} (split: the contract's encoder, decoder_init, `
  + 'decoder_step, embed_tokens.bin; sherpa-onnx: conv_frontend, encoder, decoder and tokenizer/ that sherpa-onnx loads)';

/** Parses `--layout` (also used by `build`). */
export function layoutOption(value: string): Layout {
  return parseLayout(value);
}

interface ExportCliOptions extends CommonOptions {
  model: string; revision?: string; output: string; allLogits?: boolean; embedDtype: EmbedDtype; attention: DecoderAttention;
  overwrite?: boolean; layout: Layout;
}

const EMBED_DTYPES: readonly EmbedDtype[] = ['float16', 'float32'];

function embedDtypeOption(value: string): EmbedDtype {
  if (!(EMBED_DTYPES as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`--embed-dtype must be one of ${EMBED_DTYPES.join(', ')}, got "${value}"`);
  }
  return value as EmbedDtype;
}

/** Parses `--attention` (also used by `build`); a bad value is a one-line UserError naming the flag. */
export function attentionOption(value: string): DecoderAttention {
  if (!(DECODER_ATTENTIONS as readonly string[]).includes(value)) {
    throw new UserError(`--attention must be one of ${DECODER_ATTENTIONS.join(', ')}, got "${value}"`);
  }
  return value as DecoderAttention;
}

export const ATTENTION_HELP = 'decoder attention: onnx (standard ops, any runtime) or fused '
  + '(onnxruntime-only com.microsoft GroupQueryAttention + RotaryEmbedding, fewer nodes per step)';

export function register(program: Command): void {
  program
    .command('export')
    .description('build the float32 ONNX model directory (encoder, decoder_init, decoder_step, weights, config) from a checkpoint')
    .requiredOption('--model <dir|repo>', 'checkpoint directory or Hugging Face repo id (e.g. Qwen/Qwen3-ASR-0.6B)')
    .option('--revision <rev>', 'branch, tag or commit of a hub repo (default main)')
    .requiredOption('--output <dir>', 'model directory to write (created atomically)')
    .option('--all-logits', 'decoder_init returns logits for every position, not only the last')
    .option('--embed-dtype <type>', 'element type of embed_tokens.bin: float16 or float32', embedDtypeOption, 'float16')
    .option('--attention <mode>', ATTENTION_HELP, attentionOption, 'onnx' as DecoderAttention)
    .option('--layout <layout>', LAYOUT_HELP, layoutOption, 'split' as Layout)
    .option('--overwrite', 'replace OUTPUT if it already exists')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (opts: ExportCliOptions) => {
      const result = await exportModel({
        model: opts.model, revision: opts.revision, output: opts.output, allLogits: opts.allLogits,
        embedDtype: opts.embedDtype, attention: opts.attention, layout: opts.layout, overwrite: opts.overwrite, progress: progressFor(opts),
      });
      emitResult(opts, result, () => [
        result.output,
        ...result.files.map((f) => `  ${f.name.padEnd(32)} ${f.bytes} bytes`),
      ].join('\n'));
    });
}
