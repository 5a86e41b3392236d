import { Option, type Command } from 'commander';
import { emitResult, intOption, progressFor, threadsOption, type CommonOptions } from './output.js';
import { QUANTIZE_DEFAULTS, quantizeModelDir } from '../quantize/model-dir.js';
import { ALIGNER_BLOCK_SIZE } from '../quantize/aligner.js';
import { UserError } from '../common/errors.js';
import { AWQ_DEFAULT_ALPHA } from '../quantize/awq-scales.js';
import { readAwqStats } from '../calibrate/stats-file.js';
import { describeRecipe, parseRecipeEntries } from '../quantize/recipe.js';

interface QuantizeFlags extends CommonOptions {
  modelDir: string;
  bits: string;
  blockSize?: number;
  accuracyLevel: number;
  symmetric?: boolean;
  clip?: boolean;
  exclude?: string[];
  fuse: boolean;
  skipFusion?: boolean;
  pack: boolean;
  threads?: number;
  awq?: string;
  awqAlpha?: string;
  preset?: string;
  encoder?: string;
  decoder?: string;
  embedding?: string;
  lmHead?: string;
  recipe?: string[];
  tableShare: 'range' | 'reshape';
}

/** `--recipe component=spec ...` and the per-component flags as one override map (flags win). */
function recipeOverrides(flags: QuantizeFlags): Record<string, string> {
  const out = parseRecipeEntries(flags.recipe ?? []);
  if (flags.encoder !== undefined) out.encoder = flags.encoder;
  if (flags.decoder !== undefined) out.decoder = flags.decoder;
  if (flags.embedding !== undefined) out.embedding = flags.embedding;
  if (flags.lmHead !== undefined) out.lm_head = flags.lmHead;
  return out;
}

export function register(program: Command): void {
  program
    .command('quantize')
    .description('fuse RMSNorm and quantise a model directory to MatMulNBits (int4 RTN by default) by a recipe: --preset decoders writes decoder_{init,step}.int4.onnx and decoder_weights.int4.data beside the float files; --preset whole also encoder.int4.onnx + encoder_weights.int4.data and an int4 token lookup sharing the lm_head\'s table')
    .requiredOption('--model-dir <dir>', 'exported model directory (decoder_init.onnx, decoder_step.onnx, config.json; encoder.onnx for --preset whole)')
    .addOption(new Option('--preset <name>', 'which components are quantised: decoders (decoder + lm_head) or whole (encoder, decoder, embedding, lm_head); default decoders, whole for a forced-aligner directory').choices(['decoders', 'whole']))
    .option('--encoder <spec>', 'encoder linears: fp32, int8 or int4, optionally ,block=N ,al=N ,sym ,clip (overrides the preset)')
    .option('--decoder <spec>', 'decoder linears: int8 or int4[,block=N][,al=N][,sym][,clip]')
    .option('--embedding <spec>', 'token lookup: fp32, int8 or int4[,block=N][,sym][,clip] (GatherBlockQuantized; shares the tied lm_head\'s table when both round alike)')
    .option('--lm-head <spec>', 'lm_head: fp32, int8 or int4[,block=N][,al=N][,sym][,clip]')
    .option('--recipe <component=spec...>', 'the same per component, e.g. --recipe encoder=int8 lm_head=int4,block=32')
    .addOption(new Option('--table-share <how>', 'how the lookup and the lm_head name their shared table (investigation/INVESTIGATION.md)').choices(['range', 'reshape']).default('range'))
    .addOption(new Option('--bits <n>', 'weight bits of the preset\'s quantised components (the variant: int4 or int8)').choices(['4', '8']).default('4'))
    .option('--block-size <n>', `quantisation block size along K (power of two, 16 to 256; default ${QUANTIZE_DEFAULTS.blockSize}, ${ALIGNER_BLOCK_SIZE} for a forced-aligner directory)`, intOption('--block-size'))
    .option('--accuracy-level <n>', 'MatMulNBits accuracy_level (0 = unset, 4 = int8 activations)', intOption('--accuracy-level'), QUANTIZE_DEFAULTS.accuracyLevel)
    .option('--symmetric', 'symmetric quantisation (no zero points; default asymmetric)')
    .option('--clip', 'search each block\'s clipping range for the least weight error instead of taking its min/max (same kernels and unpacked size, archives ~3 % larger: investigation entry 35; ~5x slower to quantise)')
    .option('--exclude <pattern...>', 'leave MatMul/Gemm nodes in float whose node or weight name matches a glob (* and ?)')
    .option('--no-fuse', 'skip RMSNorm -> SimplifiedLayerNormalization fusion')
    .option('--skip-fusion', 'also fold residual Adds into SkipSimplifiedLayerNormalization (see investigation/INVESTIGATION.md)')
    .option('--no-pack', 'keep q/k/v and gate/up as separate MatMulNBits (default: one packed node each, same values)')
    .option('--awq <stats.json>', 'AWQ-smooth norms and the linears they feed before rounding, with activation statistics from `qwen3-onnx calibrate` on this model')
    .option('--awq-alpha <a>', `AWQ smoothing strength from 0 to 1 (with --awq; default ${AWQ_DEFAULT_ALPHA})`)
    .option('--threads <n>', 'worker threads (default: all cores)', threadsOption())
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (flags: QuantizeFlags) => {
      if (flags.awqAlpha !== undefined && flags.awq === undefined) throw new UserError('--awq-alpha needs --awq <stats.json>');
      const alpha = flags.awqAlpha === undefined ? AWQ_DEFAULT_ALPHA : Number(flags.awqAlpha);
      if (flags.awqAlpha !== undefined && (flags.awqAlpha.trim() === '' || !Number.isFinite(alpha))) throw new UserError(`--awq-alpha must be a number, got "${flags.awqAlpha}"`);
      const result = await quantizeModelDir({
        modelDir: flags.modelDir,
        bits: Number(flags.bits) as 4 | 8,
        ...(flags.blockSize !== undefined ? { blockSize: flags.blockSize } : {}),
        accuracyLevel: flags.accuracyLevel,
        symmetric: Boolean(flags.symmetric),
        clip: Boolean(flags.clip),
        exclude: flags.exclude ?? [],
        fuse: flags.fuse,
        skipFusion: Boolean(flags.skipFusion),
        pack: flags.pack,
        ...(flags.preset !== undefined ? { preset: flags.preset as 'decoders' | 'whole' } : {}),
        overrides: recipeOverrides(flags),
        share: flags.tableShare,
        ...(flags.awq !== undefined ? { awq: await readAwqStats(flags.awq, flags.modelDir, alpha) } : {}),
        threads: flags.threads,
        progress: progressFor(flags),
      });
      emitResult(flags, result, () => {
        const r = result.report;
        const lines = [`quantized ${result.modelDir} -> ${result.variant} (${result.recipe})`, `  recipe ${describeRecipe(result.components)}${result.sharedEmbedding ? '; the lookup reads the lm_head\'s int4 table' : ''}`];
        const e = result.encoder;
        if (e) lines.push(`  ${e.graphs[0].dst}: ${e.graphs[0].quantization?.quantized.length ?? 0} MatMul -> MatMulNBits; ${e.data.file}: ${formatBytes(e.data.fileBytes)}`);
        const a = result.awq;
        if (a) lines.push(`  AWQ alpha ${a.alpha}: ${a.norms} norms, ${a.linears} weights smoothed, scales ${a.scaleMin.toPrecision(3)}..${a.scaleMax.toPrecision(3)}${a.untied.length ? `; own smoothed copy for ${a.untied.map(([w, c]) => `${w} -> ${c}`).join(', ')}` : ''}`);
        for (const g of r.graphs) {
          const q = g.quantization;
          lines.push(`  ${g.dst}: ${g.fusion.rmsNorm} RMSNorm fused${g.fusion.skipRmsNorm ? ` (${g.fusion.skipRmsNorm} with residual Add)` : ''}, `
            + `${q?.quantized.length ?? 0} MatMul -> MatMulNBits${q?.skipped.length ? `, ${q.skipped.length} left in float` : ''}`
            + `${g.packing?.packed.length ? `, packed into ${g.packing.packed.length} wider nodes` : ''}`
            + `${g.gathers?.rewritten.length ? `, ${g.gathers.rewritten.length} lookup -> GatherBlockQuantized` : ''}`);
        }
        lines.push(`  ${r.data.file}: ${formatBytes(r.data.fileBytes)}, ${r.data.uniqueTensors} tensors, ${formatBytes(r.data.bytesSaved)} saved by de-duplication`);
        return lines.join('\n');
      });
    });
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}
