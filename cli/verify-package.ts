import type { Command } from 'commander';
import { resolve } from 'node:path';
import { verifyArchive, type VerifyResult } from '../package/verify.js';
import { emitResult, progressFor, type CommonOptions } from './output.js';

export function register(program: Command): void {
  program
    .command('verify-package')
    .description('check release archives: layout, checksums (the manifest inside each, and the manifest / SHA256SUMS beside it), config, tokenizer, and that onnxruntime opens every graph')
    .argument('<archives...>', 'qwen3-asr-<size>-<variant>.tar.gz files')
    .option('--json', 'print the results as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (archives: string[], opts: CommonOptions) => {
      const results: VerifyResult[] = [];
      for (const a of archives) results.push(await verifyArchive(resolve(a), { depth: 'full', progress: progressFor(opts) }));
      emitResult(opts, results, () => results.map((r) =>
        `OK ${r.archive}: ${r.files.length} files, variant ${r.variant}, checksums match the manifest inside` +
        `${r.manifestChecked ? ' and the manifest beside it' : ' (no manifest beside it)'}` +
        `${r.sumsChecked ? ', SHA256SUMS matches' : ''}`).join('\n'));
    });
}
