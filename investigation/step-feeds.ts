import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readJsonWith } from '../checkpoint/config.js';
import { OutputConfigSchema } from '../model-dir/config.js';
import { Prng } from '../common/prng.js';
import { EmbeddingTable } from '../runtime/session.js';

/**
 * decoder_step inputs for the profiling / A-B scripts: the embedding row of token 13, position
 * `past`, and synthetic stacked caches [L,1,KV,past,D] of uniform values in [-0.5, 0.5).
 */
export async function stepFeeds(modelDir: string, past: number): Promise<Record<string, ort.Tensor>> {
  const config = await readJsonWith(OutputConfigSchema, join(modelDir, 'config.json'));
  const d = config.decoder;
  const emb = await EmbeddingTable.open(join(modelDir, 'embed_tokens.bin'), config.embed_tokens_shape, config.embed_tokens_dtype);
  const row = await emb.row(13);
  await emb.close();
  const dims = [d.num_layers, 1, d.num_key_value_heads, past, d.head_dim];
  const n = dims.reduce((a, b) => a * b, 1);
  const rng = new Prng(past);
  const fill = (): Float32Array => Float32Array.from({ length: n }, () => rng.next() - 0.5);
  return {
    input_embeds: new ort.Tensor('float32', row, [1, 1, d.hidden_size]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from([BigInt(past)]), [1, 1]),
    past_keys: new ort.Tensor('float32', fill(), dims),
    past_values: new ort.Tensor('float32', fill(), dims),
  };
}
