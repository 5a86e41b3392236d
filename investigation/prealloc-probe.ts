/**
 * Does onnxruntime-node honour pre-allocated outputs (fetches given as tensors), and what does a
 * decoder_step cost when its caches are written into reused buffers instead of fresh ones?
 * (not a test)
 *
 *   node dist/investigation/prealloc-probe.js --model-dir DIR [--graph decoder_step.int4.onnx] [--past 500] [--threads 1] [--reps 7]
 *
 * Ping-pong: two buffers sized for the longest cache; every step's present_keys/values are views
 * of the right length into the buffer the previous step did not write, so no fresh memory is
 * faulted in per step.
 */
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { readJsonWith } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { stepFeeds } from './step-feeds.js';
import { printWallAndCpu } from './stats.js';

const f = new Command('prealloc-probe')
  .requiredOption('--model-dir <dir>').option('--graph <file>', 'graph file', 'decoder_step.int4.onnx')
  .option('--past <n>', 'past length', '500').option('--threads <n>', 'intra-op threads', '1').option('--reps <n>', 'timed runs', '7')
  .parse(process.argv).opts<{ modelDir: string; graph: string; past: string; threads: string; reps: string }>();
const past = Number(f.past);
const reps = Number(f.reps);
const d = (await readJsonWith(OutputConfigSchema, join(f.modelDir, 'config.json'))).decoder;
const feeds = await stepFeeds(f.modelDir, past);
const session = await ort.InferenceSession.create(join(f.modelDir, f.graph), {
  executionMode: 'sequential', graphOptimizationLevel: 'all', intraOpNumThreads: Number(f.threads), interOpNumThreads: 1, logSeverityLevel: 3,
});
const presentDims = [d.num_layers, 1, d.num_key_value_heads, past + 1, d.head_dim];
const n = presentDims.reduce((a, b) => a * b, 1);
const keysBuf = new Float32Array(n);
const valuesBuf = new Float32Array(n);
const logitsBuf = new Float32Array(d.vocab_size);
const fetches = {
  logits: new ort.Tensor('float32', logitsBuf, [1, 1, d.vocab_size]),
  present_keys: new ort.Tensor('float32', keysBuf, presentDims),
  present_values: new ort.Tensor('float32', valuesBuf, presentDims),
};
const fresh = await session.run(feeds);
const pre = await session.run(feeds, fetches);
const aliased = pre.present_keys.data === keysBuf || (pre.present_keys.data as Float32Array).buffer === keysBuf.buffer;
let same = true;
const a = fresh.present_keys.data as Float32Array;
for (let i = 0; i < a.length && same; i++) same = a[i] === keysBuf[i];
console.log(`pre-allocated outputs honoured: ${aliased}; values equal to a normal run: ${same}`);
for (const [label, useFetches] of [['fresh outputs', false], ['pre-allocated outputs', true], ['fresh outputs', false]] as const) {
  await printWallAndCpu(label, 2, reps, () => (useFetches ? session.run(feeds, fetches) : session.run(feeds)));
}
await session.release();
