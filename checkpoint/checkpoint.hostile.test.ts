import { copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, tensorBytes } from '../common/onnx/index.js';
import { debrisIn, oneLineError, runCli, snapshotTree, treeChanges, type CliRun } from '../fixtures/hostile-support.js';
import { tinyCheckpointDir, tinyCheckpointVariantDir, tinyModelDir } from '../fixtures/test-support.js';
import { openSafetensors } from './safetensors.js';

/**
 * Hostile checkpoints for `export` (issue 17, classes 5 and 6: bad models and corrupt tokenizers)
 * and a model directory with a NaN weight for `quantize`, run through the built CLI as a user
 * would. Each case is crafted here from the tiny fixture: a copy of its small files (the weights
 * linked, or copied when a case corrupts them). Every run must fail with the exact one-line
 * error, exit 1, write nothing (no output, no temp files) and leave every file that was there
 * byte-identical.
 */

let scratch: string;
let original: string;
let hf: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'qwen3-checkpoint-hostile-'));
  original = await tinyCheckpointDir();
  hf = await tinyCheckpointVariantDir({ format: 'hf' });
});
afterAll(async () => { await rm(scratch, { recursive: true, force: true }); });

interface Crafted { root: string; ckpt: string; out: string }
let count = 0;

/** A private copy of a fixture checkpoint inside a fresh root (plus an unrelated file there). */
async function craft(from: string, edit: (ckpt: string) => Promise<void>, opts: { copyWeights?: boolean } = {}): Promise<Crafted> {
  const root = join(scratch, `case-${(count += 1)}`);
  const ckpt = join(root, 'ckpt');
  await mkdir(ckpt, { recursive: true });
  for (const name of await readdir(from)) {
    if (name.endsWith('.safetensors') && !opts.copyWeights) await symlink(join(from, name), join(ckpt, name));
    else await copyFile(join(from, name), join(ckpt, name));
  }
  await writeFile(join(root, 'notes.txt'), 'the user was here\n');
  await edit(ckpt);
  return { root, ckpt, out: join(root, 'out') };
}

async function editConfig(ckpt: string, edit: (cfg: Record<string, any>) => void): Promise<void> {
  const file = join(ckpt, 'config.json');
  const cfg = JSON.parse(await readFile(file, 'utf8')) as Record<string, any>;
  edit(cfg);
  await writeFile(file, `${JSON.stringify(cfg, null, 2)}\n`);
}

/** Overwrites element `index` of a BF16 tensor of the copied model.safetensors with `bits`. */
async function poke(ckpt: string, tensor: string, index: number, bits: number): Promise<void> {
  const src = await openSafetensors(ckpt);
  const info = src.info(tensor);
  await src.close();
  expect(info.dtype).toBe('BF16');
  const file = join(ckpt, 'model.safetensors');
  const bytes = await readFile(file);
  bytes.writeUInt16LE(bits, info.offset + 2 * index);
  await writeFile(file, bytes);
}

/** Runs the CLI and checks the failure contract: exit 1, one line, nothing written, nothing changed. */
async function failsCleanly(c: Crafted, args: string[]): Promise<string> {
  const before = snapshotTree(c.root);
  const run: CliRun = await runCli(args);
  expect(run.code, run.stderr).toBe(1);
  expect(run.stdout).toBe('');
  const message = oneLineError(run);
  expect(treeChanges(before, snapshotTree(c.root))).toEqual([]);
  expect(debrisIn(c.root)).toEqual([]);
  expect(existsSync(c.out)).toBe(false);
  return message;
}

const exportFails = (c: Crafted): Promise<string> => failsCleanly(c, ['export', '--model', c.ckpt, '--output', c.out]);

const BF16_NAN = 0x7fc0;
const BF16_INF = 0x7f80;
const BF16_NEG_INF = 0xff80;

describe('export refuses a bad model before (or while) reading it, in one line', () => {
  it('control: the unmodified copy exports', async () => {
    const c = await craft(original, async () => {});
    const run = await runCli(['export', '--model', c.ckpt, '--output', c.out, '--quiet']);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(existsSync(join(c.out, 'decoder_init.onnx'))).toBe(true);
  }, 120_000);

  it('a NaN decoder weight names the tensor and element', async () => {
    const c = await craft(original, (d) => poke(d, 'thinker.model.layers.1.mlp.up_proj.weight', 5, BF16_NAN), { copyWeights: true });
    expect(await exportFails(c)).toBe(`${c.ckpt}/model.safetensors: tensor thinker.model.layers.1.mlp.up_proj.weight: element 5 is NaN (weights must be finite numbers)`);
  }, 120_000);

  it('an infinite encoder weight names the tensor and element', async () => {
    const c = await craft(original, (d) => poke(d, 'thinker.audio_tower.conv2d2.weight', 100, BF16_INF), { copyWeights: true });
    expect(await exportFails(c)).toBe(`${c.ckpt}/model.safetensors: tensor thinker.audio_tower.conv2d2.weight: element 100 is Infinity (weights must be finite numbers)`);
  }, 120_000);

  it('a -Infinity row deep in the embedding (read in row blocks) names the element', async () => {
    const c = await craft(original, (d) => poke(d, 'thinker.model.embed_tokens.weight', 151000 * 96 + 3, BF16_NEG_INF), { copyWeights: true });
    expect(await exportFails(c)).toBe(`${c.ckpt}/model.safetensors: tensor thinker.model.embed_tokens.weight: element ${151000 * 96 + 3} is -Infinity (weights must be finite numbers)`);
  }, 120_000);

  it('a NaN in an -hf checkpoint names the tensor as stored', async () => {
    const c = await craft(hf, (d) => poke(d, 'model.multi_modal_projector.linear_2.weight', 0, BF16_NAN), { copyWeights: true });
    expect(await exportFails(c)).toBe(`${c.ckpt}/model.safetensors: tensor model.multi_modal_projector.linear_2.weight: element 0 is NaN (weights must be finite numbers)`);
  }, 120_000);

  it('a config with fewer decoder layers than the checkpoint names the extra layer', async () => {
    const c = await craft(original, (d) => editConfig(d, (cfg) => { cfg.thinker_config.text_config.num_hidden_layers = 2; }));
    expect(await exportFails(c)).toBe(`${c.ckpt}: tensor thinker.model.layers.2.input_layernorm.weight belongs to decoder layer 2, but config.json thinker_config.text_config.num_hidden_layers is 2 (the checkpoint has decoder layers up to 2)`);
  });

  it('a config with fewer encoder layers than an -hf checkpoint names the extra layer in -hf terms', async () => {
    const c = await craft(hf, (d) => editConfig(d, (cfg) => { cfg.audio_config.encoder_layers = 1; }));
    expect(await exportFails(c)).toBe(`${c.ckpt}: tensor model.audio_tower.layers.1.fc1.bias belongs to encoder layer 1, but config.json audio_config.encoder_layers is 1 (the checkpoint has encoder layers up to 2)`);
  });

  it('num_hidden_layers 1e9 is refused against the tensors present', async () => {
    const c = await craft(original, (d) => editConfig(d, (cfg) => { cfg.thinker_config.text_config.num_hidden_layers = 1e9; }));
    expect(await exportFails(c)).toBe(`${c.ckpt}: config.json thinker_config.text_config.num_hidden_layers is 1000000000, but the checkpoint has decoder layers 0..2 only (tensor thinker.model.layers.3.input_layernorm.weight is missing)`);
  });

  const configCases: Array<[string, (cfg: Record<string, any>) => void, string]> = [
    ['mrope_section not summing to head_dim/2', (cfg) => { cfg.thinker_config.text_config.rope_scaling.mrope_section = [6, 5, 6]; },
      'thinker_config.text_config.rope_scaling.mrope_section: [6,5,6] must be three numbers summing to head_dim/2 = 16'],
    ['rms_norm_eps 1e300', (cfg) => { cfg.thinker_config.text_config.rms_norm_eps = 1e300; },
      'thinker_config.text_config.rms_norm_eps: 1e+300 is outside (0, 0.01] (Qwen3 uses 1e-6)'],
    ['an unknown hidden_act', (cfg) => { cfg.thinker_config.text_config.hidden_act = 'swish_v2'; },
      'thinker_config.text_config.hidden_act: "swish_v2" is not supported (the Qwen3 decoder uses "silu")'],
    ['an unknown encoder activation', (cfg) => { cfg.thinker_config.audio_config.activation_function = 'relu'; },
      'thinker_config.audio_config.activation_function: "relu" is not supported (the Qwen3-ASR encoder uses "gelu")'],
    ['audio_token_id past the vocabulary', (cfg) => { cfg.thinker_config.audio_token_id = 151936; },
      'thinker_config.audio_token_id: 151936 is outside the vocabulary (vocab_size 151936)'],
    ['encoder heads that do not divide d_model', (cfg) => { cfg.thinker_config.audio_config.encoder_attention_heads = 3; },
      'thinker_config.audio_config.encoder_attention_heads: 3 heads do not divide d_model 64'],
    ['n_window_infer 77', (cfg) => { cfg.thinker_config.audio_config.n_window_infer = 77; },
      "thinker_config.audio_config.n_window_infer: 77 is not a multiple of 2*n_window = 100 (the encoder's attention window is n_window_infer / (2*n_window) chunks of 100 mel frames)"],
    ['kv heads that do not divide the attention heads', (cfg) => { cfg.thinker_config.text_config.num_key_value_heads = 3; },
      'thinker_config.text_config.num_key_value_heads: 3 key/value heads do not divide num_attention_heads 4'],
  ];
  it.each(configCases)('config.json with %s names the field', async (_what, edit, message) => {
    const c = await craft(original, (d) => editConfig(d, edit));
    expect(await exportFails(c)).toBe(`${c.ckpt}/config.json: ${message}`);
  });

  it('an -hf config field is named as the -hf config spells it', async () => {
    const c = await craft(hf, (d) => editConfig(d, (cfg) => { cfg.text_config.rms_norm_eps = 0; }));
    expect(await exportFails(c)).toMatch(new RegExp(`^${c.ckpt}/config\\.json: text_config\\.rms_norm_eps: `));
    const e = await craft(hf, (d) => editConfig(d, (cfg) => { cfg.audio_token_id = 200000; }));
    expect(await exportFails(e)).toBe(`${e.ckpt}/config.json: audio_token_id: 200000 is outside the vocabulary (vocab_size 151936)`);
  });
});

describe('export refuses a corrupt tokenizer before the graphs, in one line naming the file', () => {
  const jsonError = (text: string): string => {
    try { JSON.parse(text); } catch (err) { return (err as Error).message; }
    throw new Error('expected invalid JSON');
  };

  it('a truncated vocab.json', async () => {
    let truncated = '';
    const c = await craft(original, async (d) => {
      const text = await readFile(join(d, 'vocab.json'), 'utf8');
      truncated = text.slice(0, Math.floor(text.length / 2));
      await writeFile(join(d, 'vocab.json'), truncated);
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/vocab.json: not valid JSON (${jsonError(truncated)})`);
  });

  it('a merges.txt with a malformed line', async () => {
    const c = await craft(original, async (d) => {
      const lines = (await readFile(join(d, 'merges.txt'), 'utf8')).split('\n');
      lines[1000] = 'Ġ t h';
      await writeFile(join(d, 'merges.txt'), lines.join('\n'));
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/merges.txt: malformed merge line "Ġ t h"`);
  });

  it('a merges.txt naming tokens the vocabulary lacks (merges from another tokenizer)', async () => {
    const c = await craft(original, async (d) => {
      const lines = (await readFile(join(d, 'merges.txt'), 'utf8')).split('\n');
      lines[3] = 'zqx wvq';
      await writeFile(join(d, 'merges.txt'), lines.join('\n'));
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/vocab.json / ${c.ckpt}/merges.txt: merge 3 "zqx wvq" uses a token missing from the vocabulary`);
  });

  it('a truncated tokenizer_config.json', async () => {
    let truncated = '';
    const c = await craft(original, async (d) => {
      const text = await readFile(join(d, 'tokenizer_config.json'), 'utf8');
      truncated = text.slice(0, 300);
      await writeFile(join(d, 'tokenizer_config.json'), truncated);
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/tokenizer_config.json: not valid JSON (${jsonError(truncated)})`);
  });

  it('a special token moved away from the id config.json names', async () => {
    const c = await craft(original, async (d) => {
      const file = join(d, 'tokenizer_config.json');
      const cfg = JSON.parse(await readFile(file, 'utf8')) as { added_tokens_decoder: Record<string, { content: string }> };
      cfg.added_tokens_decoder['151676'].content = '<|audio_pad_v2|>';
      await writeFile(file, JSON.stringify(cfg, null, 2));
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/tokenizer_config.json: id 151676 (config.json audio_token_id) is "<|audio_pad_v2|>", expected "<|audio_pad|>"`);
  });

  it('a config naming another id for a special token', async () => {
    const c = await craft(original, (d) => editConfig(d, (cfg) => { cfg.thinker_config.audio_start_token_id = 151671; }));
    expect(await exportFails(c)).toBe(`${c.ckpt}/tokenizer_config.json: id 151671 (config.json audio_start_token_id) is "<tts_pad>", expected "<|audio_start|>"`);
  });

  it('a checkpoint without any tokenizer', async () => {
    const c = await craft(original, async (d) => {
      for (const f of ['vocab.json', 'merges.txt']) await rm(join(d, f));
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}: no tokenizer (expected vocab.json + merges.txt, or tokenizer.json)`);
  });

  it('vocab.json without merges.txt', async () => {
    const c = await craft(original, (d) => rm(join(d, 'merges.txt')));
    expect(await exportFails(c)).toBe(`${c.ckpt}/vocab.json: merges.txt is missing beside it (a byte-level BPE tokenizer needs both)`);
  });

  it('an -hf tokenizer.json cut short', async () => {
    let truncated = '';
    const c = await craft(hf, async (d) => {
      const text = await readFile(join(d, 'tokenizer.json'), 'utf8');
      truncated = text.slice(0, text.length - 1000);
      await writeFile(join(d, 'tokenizer.json'), truncated);
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/tokenizer.json: not valid JSON (${jsonError(truncated)})`);
  });

  it('an -hf tokenizer.json whose added tokens lack <asr_text>', async () => {
    const c = await craft(hf, async (d) => {
      const file = join(d, 'tokenizer.json');
      const tj = JSON.parse(await readFile(file, 'utf8')) as { added_tokens: Array<{ content: string }> };
      tj.added_tokens = tj.added_tokens.filter((t) => t.content !== '<asr_text>');
      await writeFile(file, JSON.stringify(tj));
    });
    expect(await exportFails(c)).toBe(`${c.ckpt}/tokenizer.json (derived tokenizer_config.json): id 151704 (asr_text) is not a token, expected "<asr_text>"`);
  });
});

describe('quantize on a model directory with a NaN weight', () => {
  it('names the weight in one line (no worker stack trace) and writes nothing', async () => {
    const root = join(scratch, 'quantize-nan');
    const modelDir = join(root, 'model');
    await mkdir(root, { recursive: true });
    await cp(await tinyModelDir(), modelDir, { recursive: true });
    const { model, path } = await loadModel(join(modelDir, 'decoder_init.onnx'));
    const weight = (model.graph!.initializer ?? []).find((t) => t.name === 'thinker.model.layers.1.mlp.down_proj.weight');
    expect(weight?.dims?.map(Number)).toEqual([192, 96]); // MatMul weight [K, N]
    const where = tensorBytes(weight!, path);
    if (where.kind !== 'external') throw new Error('expected external data');
    const data = await readFile(where.file);
    data.writeFloatLE(NaN, where.offset + 4 * 7); // k = 0, n = 7
    await writeFile(where.file, data);
    const message = await failsCleanly({ root, ckpt: modelDir, out: join(root, 'out') }, ['quantize', '--model-dir', modelDir]);
    expect(message).toBe('thinker.model.layers.1.mlp.down_proj.weight: weight column 7, block 0 is not finite (NaN or infinity); a model directory\'s weights must be finite numbers');
  }, 180_000);
});
