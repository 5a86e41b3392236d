/**
 * How far quantised forced-aligner builds are from the float one (INVESTIGATION.md, entry 35):
 * for each clip, the float directory's timestamp logits against each candidate's, on the same
 * prompt (the clip's .txt words), one model loaded at a time.
 *
 *   npx tsc -p tsconfig.json
 *   flock /tmp/qwen3-heavy.lock node dist/investigation/aligner-quant-error.js \
 *     --reference DIR[:fp32] --candidates DIR:int4,DIR2:int4 [--clips jfk.wav,...] [--threads 2]
 *
 * Per candidate: audio_features ‖f_c − f_r‖₂ / ‖f_r‖₂, timestamp logits ‖l_c − l_r‖₂ / ‖l_r‖₂
 * (over all timestamp positions), the share of timestamp classes equal to the reference's and the
 * mean |class difference| in 80 ms classes. Prints a markdown table and JSON.
 */
import { Command } from 'commander';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { AlignerModel, alignableWords } from '../runtime/aligner.js';
import { buildAlignerPrompt } from '../runtime/align-prompt.js';
import { loadAudio } from '../runtime/audio.js';
import { logMelSpectrogram } from '../runtime/mel.js';
import { readFile } from 'node:fs/promises';

const AUDIO = fileURLToPath(new URL('../../../shared/audio/', import.meta.url));

interface ClipOutput { features: Float32Array; logits: Float32Array; classes: number[] }

async function runClips(dir: string, variant: string, clips: string[], threads: number): Promise<Map<string, ClipOutput>> {
  const model = await AlignerModel.load(dir, { variant, threads });
  const out = new Map<string, ClipOutput>();
  try {
    for (const clip of clips) {
      const wav = join(AUDIO, clip);
      const text = await readFile(wav.replace(/\.wav$/, '.txt'), 'utf8');
      const words = alignableWords(text, 'English');
      const { samples } = await loadAudio(wav);
      const mel = logMelSpectrogram(samples);
      const enc = await model.encoder.run({ mel: new ort.Tensor('float32', mel.data, [1, mel.nMels, mel.frames]) });
      const features = enc.audio_features;
      const prompt = buildAlignerPrompt(model.tokenizer, words, features.dims[1], model.config.timestamp_token_id);
      const dec = await model.decoder.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(prompt.ids, (v) => BigInt(v)), [1, prompt.ids.length]),
        audio_features: features,
      });
      out.set(clip, {
        features: Float32Array.from(features.data as Float32Array),
        logits: Float32Array.from(dec.timestamp_logits.data as Float32Array),
        classes: Array.from(dec.timestamp_classes.data as BigInt64Array, Number),
      });
    }
  } finally {
    await model.release();
  }
  return out;
}

function relError(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += a[i] ** 2; }
  return Math.sqrt(d / n);
}

function parseDirVariant(spec: string, fallback: string): { dir: string; variant: string } {
  const at = spec.lastIndexOf(':');
  return at > 0 ? { dir: spec.slice(0, at), variant: spec.slice(at + 1) } : { dir: spec, variant: fallback };
}

async function main(): Promise<void> {
  const opts = new Command()
    .requiredOption('--reference <dir[:variant]>', 'the float aligner directory (variant fp32)')
    .requiredOption('--candidates <list>', 'comma-separated dir[:variant] (default variant int4)')
    .option('--clips <list>', 'clips under shared/audio with a .txt beside each', 'jfk.wav,notld/10s_back_down_the_road.wav')
    .option('--threads <n>', 'onnxruntime intra-op threads', '2')
    .parse()
    .opts<{ reference: string; candidates: string; clips: string; threads: string }>();
  const clips = opts.clips.split(',').filter(Boolean);
  const threads = Number(opts.threads);
  const ref = parseDirVariant(opts.reference, 'fp32');
  const reference = await runClips(ref.dir, ref.variant, clips, threads);
  const rows: Array<Record<string, string | number>> = [];
  for (const spec of opts.candidates.split(',').filter(Boolean)) {
    const c = parseDirVariant(spec, 'int4');
    const got = await runClips(c.dir, c.variant, clips, threads);
    for (const clip of clips) {
      const r = reference.get(clip) as ClipOutput;
      const g = got.get(clip) as ClipOutput;
      const same = g.classes.filter((x, i) => x === r.classes[i]).length;
      const meanAbs = g.classes.reduce((s, x, i) => s + Math.abs(x - r.classes[i]), 0) / g.classes.length;
      rows.push({
        candidate: `${c.dir}:${c.variant}`, clip, featuresRel: relError(r.features, g.features), logitsRel: relError(r.logits, g.logits),
        classesSame: `${same}/${g.classes.length}`, meanAbsClassDiff: meanAbs,
      });
    }
  }
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, load ${loadavg()[0].toFixed(2)}`);
  console.log('| candidate | clip | features rel | logits rel | classes equal | mean abs class diff |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.candidate} | ${r.clip} | ${(r.featuresRel as number).toFixed(4)} | ${(r.logitsRel as number).toFixed(4)} | ${r.classesSame} | ${(r.meanAbsClassDiff as number).toFixed(2)} |`);
  }
  console.log(JSON.stringify(rows));
}

await main();
