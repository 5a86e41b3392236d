/**
 * What onnxruntime's weight pre-packing costs and buys: loads encoder + decoder_init +
 * decoder_step of a variant with or without `session.disable_prepacking`, then times
 * decoder_step at a past length, and reports load time, step time and resident memory.
 * Run each configuration in its own process (memory figures are per process). (not a test)
 *
 *   node dist/investigation/prepack-probe.js --model-dir DIR --variant fp32|int4 [--no-prepack] [--past 200] [--reps 7]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { stepFeeds } from './step-feeds.js';
import { median } from './stats.js';

const f = new Command('prepack-probe')
  .requiredOption('--model-dir <dir>').option('--variant <v>', 'fp32 or int4', 'fp32')
  .option('--no-prepack', 'load with session.disable_prepacking')
  .option('--past <n>', 'past length of the timed step', '200').option('--reps <n>', 'timed runs', '7')
  .parse(process.argv).opts<{ modelDir: string; variant: string; prepack: boolean; past: string; reps: string }>();

const suffix = f.variant === 'fp32' ? '' : `.${f.variant}`;
const options: ort.InferenceSession.SessionOptions = {
  executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
  ...(f.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
};
const started = performance.now();
const sessions: ort.InferenceSession[] = [];
for (const graph of ['encoder.onnx', `decoder_init${suffix}.onnx`, `decoder_step${suffix}.onnx`]) {
  sessions.push(await ort.InferenceSession.create(join(f.modelDir, graph), options));
}
const loadMs = performance.now() - started;
const feeds = await stepFeeds(f.modelDir, Number(f.past));
await sessions[2].run(feeds);
const times: number[] = [];
for (let i = 0; i < Number(f.reps); i += 1) {
  const t = performance.now();
  await sessions[2].run(feeds);
  times.push(performance.now() - t);
}
const status = readFileSync('/proc/self/status', 'utf8');
const kib = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
process.stdout.write(`${JSON.stringify({
  variant: f.variant, prepack: f.prepack, loadMs: Math.round(loadMs), stepMs: Number(median(times).toFixed(1)),
  past: Number(f.past), rssMiB: Math.round(kib('VmRSS') / 1024), peakRssMiB: Math.round(kib('VmHWM') / 1024),
})}\n`);
for (const s of sessions) await s.release();
