/**
 * What a decoder_step run costs outside its kernels (not a test): wall, user and system CPU ms per
 * `session.run` when every output comes back to JS, against a run that fetches only `logits`
 * (the caches then stay inside onnxruntime). Pair with profile-step.js for the kernel time.
 *
 *   node dist/investigation/step-io-cost.js --model-dir DIR [--graph decoder_step.int4.onnx] [--past 500] [--threads 1] [--reps 7]
 */
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { stepFeeds } from './step-feeds.js';
import { printWallAndCpu } from './stats.js';

const f = new Command('step-io-cost')
  .requiredOption('--model-dir <dir>').option('--graph <file>', 'graph file', 'decoder_step.int4.onnx')
  .option('--past <n>', 'past length', '500').option('--threads <n>', 'intra-op threads', '1').option('--reps <n>', 'timed runs', '7')
  .parse(process.argv).opts<{ modelDir: string; graph: string; past: string; threads: string; reps: string }>();
const feeds = await stepFeeds(f.modelDir, Number(f.past));
const session = await ort.InferenceSession.create(join(f.modelDir, f.graph), {
  executionMode: 'sequential', graphOptimizationLevel: 'all', intraOpNumThreads: Number(f.threads), interOpNumThreads: 1, logSeverityLevel: 3,
});
for (let i = 0; i < 3; i++) await session.run(feeds);
const reps = Number(f.reps);
for (const [label, fetches] of [['all outputs', undefined], ['logits only', ['logits']], ['all outputs', undefined]] as const) {
  await printWallAndCpu(label, 0, reps, () => (fetches ? session.run(feeds, [...fetches]) : session.run(feeds)));
}
await session.release();
