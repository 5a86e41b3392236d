import type { Command } from 'commander';
import { publish } from '../package/publish.js';
import { emitResult, progressFor, type CommonOptions } from './output.js';

interface PublishCliOptions extends CommonOptions {
  dist: string; repo: string; hubUrl?: string; branch?: string; create?: boolean; dryRun?: boolean;
}

export function register(program: Command): void {
  program
    .command('publish')
    .description('upload a build\'s archives, manifests, SHA256SUMS and model card to a Hugging Face model repo (token: HF_TOKEN)')
    .requiredOption('--dist <dir>', 'the dist/ directory of a build (or a package output directory)')
    .requiredOption('--repo <owner/name>', 'target model repo')
    .option('--branch <name>', 'target branch (default: the repo default)')
    .option('--hub-url <url>', 'hub endpoint (default: HF_ENDPOINT or huggingface.co)')
    .option('--create', 'create the repo when it does not exist')
    .option('--dry-run', 'check the files and print what would be uploaded')
    .option('--json', 'print the plan / result as JSON')
    .option('--quiet', 'print nothing but errors')
    .action(async (opts: PublishCliOptions) => {
      const progress = progressFor(opts);
      progress.info(opts.dryRun ? `checking ${opts.dist}` : `publishing ${opts.dist} to ${opts.repo}`);
      const result = await publish({
        distDir: opts.dist, repo: opts.repo, hubUrl: opts.hubUrl, branch: opts.branch, create: opts.create, dryRun: opts.dryRun, progress,
      });
      emitResult(opts, result, () => [
        ...result.files.map((f) => `${opts.dryRun ? 'would upload' : 'uploaded'} ${f.path}  ${f.sha256}`),
        ...(result.commit ? [`commit ${result.commit}`] : []),
      ].join('\n'));
    });
}
