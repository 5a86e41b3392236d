/**
 * AWQ alpha sweep (not a test): int4-vs-fp32 logit error of the tiny fixture with planted
 * activation-outlier channels (decoder input_layernorm / post_attention_layernorm weights x20
 * on a few hidden channels), plain RTN against AWQ-smoothed RTN at several alphas.
 *
 *   npx tsc -p tsconfig.json && node dist/investigation/awq-sweep.js [--outliers 4] [--seed 0]
 *     [--alphas 0,0.1,0.2,0.5,0.8] [--steps 8] [--eval-clips 3] [--accuracy-level 4] [--json]
 *
 * Run from the repository root (audio is read from ../shared/audio). Calibration: jfk.wav and
 * one notld clip (32 greedy tokens each); evaluation: three other notld clips, teacher-forced on
 * the fp32 model's greedy tokens for --steps steps. Prints mean relative L2 of the logits and
 * top-1 agreement per variant.
 */
import { join, resolve } from 'node:path';
import { readJsonWith } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { calibrateModelDir } from '../calibrate/calibrate.js';
import { audioEvalCases, compareLogits, type LogitError } from './logit-error.js';
import { copyModelDir, tinyExportedModelDir } from '../calibrate/test-support.js';
import { QUANTIZE_DEFAULTS, quantizeModelDir } from '../quantize/model-dir.js';
import { EmbeddingTable } from '../runtime/session.js';
import { readAwqStats } from '../calibrate/stats-file.js';

const CALIBRATION = ['jfk.wav', 'notld/10s_back_down_the_road.wav'];
/** Short clips not used for calibration, shortest first; --eval-clips takes the first n. */
const EVALUATION = [
  'notld/5s_dont_worry_about_him.wav', 'notld/5s_were_better_off_up_here.wav', 'notld/7s_i_wonder_what_happened.wav',
  'notld/7s_prayings_for_church.wav', 'notld/7s_theyre_afraid_of_fire.wav', 'notld/8s_do_you_live_here.wav',
  'notld/10s_im_taking_the_girl_with_me.wav', 'notld/12s_if_anything_should_try_to_break_in.wav',
];

function flag(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const outliers = Number(flag(args, '--outliers', '4'));
  const alphas = flag(args, '--alphas', '0,0.1,0.2,0.5,0.8').split(',').map(Number);
  const steps = Number(flag(args, '--steps', '8'));
  const evalClips = Number(flag(args, '--eval-clips', '3'));
  const audioDir = resolve(flag(args, '--audio-dir', '../shared/audio'));
  const seed = Number(flag(args, '--seed', '0'));
  const accuracyLevel = Number(flag(args, '--accuracy-level', String(QUANTIZE_DEFAULTS.accuracyLevel)));
  const json = args.includes('--json');

  const { dir, cleanup } = await copyModelDir(await tinyExportedModelDir({ outlierChannels: outliers, seed }));
  try {
    const stats = join(dir, '..', 'stats.json');
    const t0 = performance.now();
    const cal = await calibrateModelDir({ modelDir: dir, audio: CALIBRATION.map((f) => join(audioDir, f)), output: stats, maxNewTokens: 32 });
    const calibrateS = (performance.now() - t0) / 1000;
    const config = await readJsonWith(OutputConfigSchema, join(dir, 'config.json'));
    const embeddings = await EmbeddingTable.open(join(dir, 'embed_tokens.bin'), config.embed_tokens_shape, config.embed_tokens_dtype);
    const cases = await audioEvalCases(dir, EVALUATION.slice(0, evalClips).map((f) => join(audioDir, f)));
    const fp32 = { init: join(dir, 'decoder_init.onnx'), step: join(dir, 'decoder_step.onnx') };
    const int4 = { init: join(dir, 'decoder_init.int4.onnx'), step: join(dir, 'decoder_step.int4.onnx') };
    const rows: { variant: string; error: LogitError }[] = [];
    try {
      for (const alpha of [null, ...alphas]) {
        await quantizeModelDir({
          modelDir: dir, ...QUANTIZE_DEFAULTS, accuracyLevel, exclude: [],
          ...(alpha === null ? {} : { awq: await readAwqStats(stats, dir, alpha) }),
        });
        const error = await compareLogits(fp32, int4, cases, { steps, embeddings, hidden: config.decoder.hidden_size });
        rows.push({ variant: alpha === null ? 'RTN' : `AWQ alpha ${alpha}`, error });
      }
    } finally {
      await embeddings.close();
    }
    if (json) {
      process.stdout.write(`${JSON.stringify({ outliers, seed, accuracyLevel, steps, calibration: cal, calibrateS, rows }, null, 2)}\n`);
      return;
    }
    const base = rows[0].error.meanRelL2;
    console.log(`tiny fixture seed ${seed}, ${outliers} outlier channels; calibration ${cal.files} files (${cal.prefillPositions} prefill + ${cal.decodePositions} decode positions, ${calibrateS.toFixed(1)} s); `
      + `evaluation ${cases.length} clips x ${steps + 1} positions, int4 block ${QUANTIZE_DEFAULTS.blockSize} accuracy_level ${accuracyLevel} asymmetric`);
    console.log('| variant | mean rel. L2 of logits | vs RTN | top-1 agreement |');
    console.log('|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.variant} | ${r.error.meanRelL2.toFixed(4)} | ${(r.error.meanRelL2 / base).toFixed(3)} | ${(100 * r.error.top1Agreement).toFixed(1)} % |`);
    }
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
