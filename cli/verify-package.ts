import type { Command } from 'commander';
import { resolve } from 'node:path';
import { verifyArchive } from '../package/verify.js';
import { emitResult, progressFor, type CommonOptions } from './output.js';

export function register(program: Command): void {
  program
    .command('verify-package')
    .description('check a release archive: layout, checksums (manifest / SHA256SUMS beside it), config, and that onnxruntime opens every graph')
    .argument('<archive>', 'qwen3-asr-<size>-<variant>.tar.gz')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (archive: string, opts: CommonOptions) => {
      const result = await verifyArchive(resolve(archive), { openInOrt: true, progress: progressFor(opts) });
      emitResult(opts, result, () =>
        `OK ${result.archive}: ${result.files.length} files, variant ${result.variant}` +
        `${result.manifestChecked ? ', manifest checksums match' : ', no manifest beside it'}` +
        `${result.sumsChecked ? ', SHA256SUMS matches' : ''}`);
    });
}
