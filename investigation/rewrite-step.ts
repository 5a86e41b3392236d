/**
 * Writes prototype decoder_step variants next to a model's graph (see step-variants.ts).
 *
 *   node dist/investigation/rewrite-step.js --model-dir DIR [--graph decoder_step.int4.onnx] \
 *     --rewrite kv-direct[,rotary] --output decoder_step.int4.kv.onnx
 */
import { join } from 'node:path';
import { Command } from 'commander';
import { OutputConfigSchema, readJsonWith } from '../checkpoint/config.js';
import { rewriteStep, type StepRewrite } from './step-variants.js';

const f = new Command('rewrite-step')
  .requiredOption('--model-dir <dir>').option('--graph <file>', 'source graph', 'decoder_step.int4.onnx')
  .requiredOption('--rewrite <list>', 'kv-direct, gqa, rotary (comma-separated, applied in order)')
  .requiredOption('--output <file>', 'file name in the model dir')
  .parse(process.argv).opts<{ modelDir: string; graph: string; rewrite: string; output: string }>();
const config = await readJsonWith(OutputConfigSchema, join(f.modelDir, 'config.json'));
const d = config.decoder;
await rewriteStep(join(f.modelDir, f.graph), join(f.modelDir, f.output),
  { layers: d.num_layers, heads: d.num_attention_heads, kvHeads: d.num_key_value_heads, headDim: d.head_dim },
  f.rewrite.split(',') as StepRewrite[]);
console.log(join(f.modelDir, f.output));
