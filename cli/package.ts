import type { Command } from 'commander';
import { parseCompressionLevel, type CompressionLevel } from '../package/archive-writer.js';
import { resolve } from 'node:path';
import { packageModel } from '../package/package-model.js';
import { emitResult, intOption, progressFor, type CommonOptions } from './output.js';

interface PackageCliOptions extends CommonOptions {
  modelDir: string; variant: string; output: string; level: CompressionLevel; sizeLabel?: string;
}

export function register(program: Command): void {
  program
    .command('package')
    .description('write a reproducible qwen3-asr-<size>-<variant>.tar.gz with its manifest and SHA256SUMS')
    .requiredOption('--model-dir <dir>', 'model directory written by export (and quantize)')
    .option('--variant <variant>', 'fp32 or a quantized variant such as int4', 'fp32')
    .requiredOption('--output <dir>', 'directory for the archive, manifest and SHA256SUMS')
    .option('--level <level>', 'compression: huffman (fast, default) or a zlib level 0-9', parseCompressionLevel, 'huffman' as CompressionLevel)
    .option('--size-label <label>', 'size in the archive name (default: 0.6b/1.7b from the config, else custom)')
    .option('--json', 'print the manifest as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (opts: PackageCliOptions) => {
      const result = await packageModel({
        modelDir: resolve(opts.modelDir), variant: opts.variant, outputDir: resolve(opts.output),
        level: opts.level, sizeLabel: opts.sizeLabel, progress: progressFor(opts),
      });
      emitResult(opts, { archivePath: result.archive, manifestPath: result.manifestPath, manifest: result.manifest }, () =>
        `${result.archive}\n  ${result.manifest.files.length} files, ${result.manifest.archive.size} bytes, sha256 ${result.manifest.archive.sha256}`);
    });
}
