/**
 * `npm run bench` — one benchmark that says how fast and how small, against the limits.
 *
 *   npx tsc -p tsconfig.json
 *   npm run bench                              # 0.6B: generate, export, quantize, package, run
 *   npm run bench -- --preset 0.6b,1.7b        # and the 1.7B after it
 *   npm run bench -- --checkpoint /tmp/ck06    # reuse a generated checkpoint
 *   npm run bench -- --help
 *
 * Prints markdown tables, writes the full figures to investigation/results/bench-<preset>-<time>.json
 * (gitignored; the path is printed) and appends a numbered entry to investigation/INVESTIGATION.md.
 * Big outputs live in a temp dir that is removed at the end (unless --keep).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { cpus, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { writeFileAtomic } from '../common/atomic.js';
import { isPresetName, type PresetName } from '../fixtures/presets.js';
import { DECODER_ATTENTIONS, type DecoderAttention } from '../graph-builder/decoder.js';
import { benchEntry, formatTables } from './bench-report.js';
import { repoRoot, runBench, type BenchResult } from './bench-run.js';
import { appendEntry } from './investigation-log.js';
import { defaultRssMethod, type RssMethod } from './measured-child.js';

const positiveInt = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a non-negative integer, got "${v}"`);
  return n;
};
const intList = (flag: string) => (v: string): number[] => v.split(',').filter(Boolean).map(positiveInt(flag));
const presetList = (v: string): PresetName[] => v.split(',').map((p) => {
  if (!isPresetName(p)) throw new InvalidArgumentError(`--preset: unknown preset "${p}" (tiny, 0.6b, 1.7b)`);
  return p;
});

interface Flags {
  preset: PresetName[]; with17b?: boolean; checkpoint?: string; workDir: string; warmup: number; reps: number; loadReps: number;
  audioSeconds: number; past: number[]; threads: number[]; sweepPast: number; bandwidthMib: number; bandwidthReps: number;
  e2e: boolean; sherpa: boolean; clip: string; clipTokens: number; attention: DecoderAttention; rssMethod?: RssMethod; keep?: boolean; log: boolean; hypothesis?: string; quiet?: boolean;
}

async function main(argv: string[]): Promise<void> {
  const cores = cpus().length;
  const program = new Command('bench')
    .description('build synthetic full-size checkpoints and measure every stage, size and runtime figure on this machine')
    .option('--preset <list>', 'comma-separated presets (tiny, 0.6b, 1.7b)', presetList, ['0.6b'] as PresetName[])
    .option('--with-1.7b', 'also run the 1.7B after the presets given', false)
    .option('--checkpoint <dir>', 'reuse this checkpoint instead of generating one (single preset only)')
    .option('--work-dir <dir>', 'parent of the temp work dir', tmpdir())
    .option('--warmup <n>', 'untimed runs before each timed series', positiveInt('--warmup'), 2)
    .option('--reps <n>', 'timed repetitions (the median is reported)', positiveInt('--reps'), 7)
    .option('--load-reps <n>', 'timed model loads per variant', positiveInt('--load-reps'), 3)
    .option('--audio-seconds <n>', 'encoder input length', positiveInt('--audio-seconds'), 10)
    .option('--past <list>', 'decoder_step past lengths', intList('--past'), [50, 200, 500])
    .option('--threads <list>', 'intra-op thread counts to sweep (empty: no sweep)', intList('--threads'),
      [...new Set([1, 2, Math.max(1, cores >> 1), cores, cores + 1])].sort((a, b) => a - b))
    .option('--sweep-past <n>', 'past length of the thread sweep', positiveInt('--sweep-past'), 200)
    .option('--bandwidth-mib <n>', 'bytes per copy in the bandwidth benchmark', positiveInt('--bandwidth-mib'), 256)
    .option('--bandwidth-reps <n>', 'copies per bandwidth figure (best is kept)', positiveInt('--bandwidth-reps'), 10)
    .option('--no-e2e', 'skip the end-to-end `build` stage')
    .option('--no-sherpa', 'skip the sherpa-onnx layout (export, quantize, package, our runtime on it, sherpa-onnx-node on its int4 files)')
    .option('--clip <wav>', 'clip both runtimes recognise end to end', join(repoRoot(), '..', 'shared', 'audio', 'jfk.wav'))
    .option('--clip-tokens <n>', 'tokens generated on the clip', positiveInt('--clip-tokens'), 32)
    .addOption(new Option('--attention <kind>', 'decoder attention of the export: onnx (plain ops) or fused (com.microsoft GroupQueryAttention + RotaryEmbedding)').choices([...DECODER_ATTENTIONS]).default('onnx'))
    .addOption(new Option('--rss-method <m>', 'how peak RSS is read').choices(['time', 'resource-usage']))
    .option('--keep', 'keep the work dir (checkpoint, model, build)')
    .option('--no-log', 'do not append an entry to investigation/INVESTIGATION.md')
    .option('--hypothesis <text>', 'hypothesis paragraph of the INVESTIGATION.md entry')
    .option('--quiet', 'no progress lines on stderr')
    .parse(argv);
  const f = program.opts<Flags>();
  const presets = f.with17b && !f.preset.includes('1.7b') ? [...f.preset, '1.7b' as const] : f.preset;
  if (f.checkpoint && presets.length > 1) throw new InvalidArgumentError('--checkpoint works with a single preset');
  const root = repoRoot();
  const rssMethod = f.rssMethod ?? await defaultRssMethod();
  const quote = (a: string): string => (/^[\w./,=:@-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const args = argv.slice(2);
  const command = args.length ? `npm run bench -- ${args.map(quote).join(' ')}` : 'npm run bench';

  for (const preset of presets) {
    const result: BenchResult = await runBench({
      preset, workRoot: f.workDir, checkpoint: f.checkpoint, warmup: f.warmup, reps: Math.max(1, f.reps),
      loadReps: Math.max(1, f.loadReps), audioSeconds: Math.max(1, f.audioSeconds), pastLengths: f.past,
      sweepThreads: f.threads.filter((t) => t > 0), sweepPast: f.sweepPast, bandwidthBytes: f.bandwidthMib * 2 ** 20,
      bandwidthReps: Math.max(1, f.bandwidthReps), bandwidthThreads: cores, endToEnd: f.e2e, sherpa: f.sherpa, clip: f.clip, clipTokens: Math.max(1, f.clipTokens), attention: f.attention, rssMethod, keep: Boolean(f.keep),
      log: f.quiet ? () => undefined : (m) => process.stderr.write(`${m}\n`),
    });
    const stamp = result.startedAt.replace(/[:.]/g, '-');
    const path = join(root, 'investigation', 'results', `bench-${preset}-${stamp}.json`);
    await writeFileAtomic(path, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`\n# qwen3-onnx bench: ${preset}\n\n${formatTables(result)}\n\nresults: ${path}\n`);
    if (f.log) {
      const n = await appendEntry(join(root, 'investigation', 'INVESTIGATION.md'), benchEntry(result, command, relative(root, path), f.hypothesis));
      process.stdout.write(`appended entry ${n} to investigation/INVESTIGATION.md\n`);
    }
  }
}

main(process.argv).catch((err: unknown) => {
  process.stderr.write(`bench: error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
