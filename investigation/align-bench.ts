/**
 * Time and peak RSS of `qwen3-onnx align` (INVESTIGATION.md, the forced-aligner entry).
 *
 *   npx tsc -p tsconfig.json
 *   flock /tmp/qwen3-heavy.lock node dist/investigation/align-bench.js --model-dir ALIGNER_DIR \
 *     [--variants fp32,int4] [--clips jfk.wav,notld/60s_i_dont_want_anyones_life_on_my_hands.wav] [--threads 2]
 *
 * Every (clip, variant) runs `align --json` on the clip and its .txt transcript as a child under GNU
 * /usr/bin/time -v (wall and peak RSS from outside; load, mel, encoder and decoder times from the
 * command's own JSON). Prints a markdown table and the JSON of every run.
 */
import { Command } from 'commander';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AlignReport } from '../cli/align.js';
import { timeVerbose } from './time-verbose.js';

const AUDIO = fileURLToPath(new URL('../../../shared/audio/', import.meta.url));
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

interface Row {
  clip: string; variant: string; audioSeconds: number; words: number; audioTokens: number; promptTokens: number;
  loadS: number; melS: number; encoderS: number; decoderS: number; wallS: number; peakRssMiB: number; repaired: number;
}

async function main(): Promise<void> {
  const opts = new Command()
    .requiredOption('--model-dir <dir>', 'aligner model directory')
    .option('--variants <list>', 'variants', 'fp32,int4')
    .option('--clips <list>', 'clips under shared/audio (each with a .txt beside it)', 'jfk.wav,notld/60s_i_dont_want_anyones_life_on_my_hands.wav')
    .option('--threads <n>', 'onnxruntime intra-op threads', '2')
    .parse()
    .opts<{ modelDir: string; variants: string; clips: string; threads: string }>();
  const rows: Row[] = [];
  const started = Date.now();
  const loadStart = loadavg()[0];
  for (const clip of opts.clips.split(',').filter(Boolean)) {
    const wav = join(AUDIO, clip);
    const txt = wav.replace(/\.wav$/, '.txt');
    for (const variant of opts.variants.split(',').filter(Boolean)) {
      const run = await timeVerbose([process.execPath, CLI, 'align', '--model-dir', opts.modelDir, '--variant', variant,
        '--language', 'English', '--text-file', txt, '--threads', opts.threads, '--json', wav]);
      const r = JSON.parse(run.stdout) as AlignReport;
      const c = r.chunks[0];
      const row: Row = {
        clip, variant, audioSeconds: r.audioSeconds, words: r.words.length, audioTokens: c.audioTokens, promptTokens: c.promptTokens,
        loadS: r.loadMs / 1000, melS: r.timings.melMs / 1000, encoderS: r.timings.encoderMs / 1000, decoderS: r.timings.decoderMs / 1000,
        wallS: run.wallSeconds, peakRssMiB: run.peakRssMiB, repaired: c.repaired,
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }
  const f = (x: number): string => x.toFixed(2);
  const lines = [
    `aligner ${opts.modelDir}, --threads ${opts.threads}; ${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}; load ${loadStart.toFixed(1)} at start, ${loadavg()[0].toFixed(1)} at end; ${Math.round((Date.now() - started) / 1000)} s`,
    '',
    '| clip | variant | audio s | words | audio tokens | prompt tokens | load s | mel s | encoder s | decoder s | wall s | peak RSS MiB | repaired |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.clip} | ${r.variant} | ${r.audioSeconds.toFixed(1)} | ${r.words} | ${r.audioTokens} | ${r.promptTokens} | ${f(r.loadS)} | ${f(r.melS)} | ${f(r.encoderS)} | ${f(r.decoderS)} | ${r.wallS.toFixed(1)} | ${r.peakRssMiB} | ${r.repaired} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n\n${JSON.stringify(rows)}\n`);
}

await main();
