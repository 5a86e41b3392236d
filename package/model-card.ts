import type { PackageManifest } from './manifest.js';

/** Human-readable byte size with binary units (stable: no locale formatting). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? `${n} B` : `${v.toFixed(2)} ${units[u]}`;
}

const RECIPE_TEXT: Record<string, string> = {
  fp32: 'float32 weights exported op by op from the BF16 safetensors (no tracer).',
};

function recipeLine(m: PackageManifest): string {
  if (!m.recipe) return RECIPE_TEXT[m.variant] ?? 'float weights.';
  const parts = Object.entries(m.recipe).map(([graph, r]) => `\`${graph}\`: \`${r}\``);
  // The recipe states each component (quantize/recipe.ts); older directories name only the decoders.
  const own = (k: string): string | undefined => m.recipe?.[m.variant === 'int4' ? k : `${k}.${m.variant}`];
  const encoder = own('encoder');
  const encoderText = encoder && encoder !== 'fp32'
    ? `the encoder's linears are \`${encoder}\` too (its Conv2d stem float32)`
    : 'the encoder stays float32 and is shared with the fp32 variant';
  const embedding = own('embedding');
  const lookupText = embedding && embedding !== 'fp32' ? '; the token lookup reads the lm_head\'s int4 table (GatherBlockQuantized), one copy' : '';
  return `weight-only quantisation (${parts.join(', ')}); ${encoderText}${lookupText}.`;
}

/**
 * The README.md of the Hugging Face model repo the release publishes to: front matter, one
 * section per archive (files, sizes, checksums, recipe) and how to load the model.
 */
export function modelCard(manifests: PackageManifest[]): string {
  const sorted = [...manifests].sort((a, b) => (a.archive.path < b.archive.path ? -1 : 1));
  const base = sorted.find((m) => m.source)?.source?.model ?? 'Qwen/Qwen3-ASR-0.6B';
  const lines: string[] = [
    '---',
    'license: apache-2.0',
    `base_model: ${base}`,
    'pipeline_tag: automatic-speech-recognition',
    'library_name: onnxruntime',
    'tags:',
    '  - onnx',
    '  - qwen3-asr',
    '  - speech-recognition',
    '---',
    '',
    `# ${base.split('/').pop()} for ONNX Runtime`,
    '',
    `ONNX export of [${base}](https://huggingface.co/${base}) built by qwen3-onnx` +
      ` ${sorted[0]?.tool.version ?? ''} straight from the safetensors: an audio encoder, a prefill decoder` +
      ' (`decoder_init`) and a one-token decoder (`decoder_step`) sharing one weights file, stacked KV caches' +
      ' `[layers, batch, kv_heads, seq, head_dim]`, and the token embedding table as `embed_tokens.bin`.',
    '',
  ];
  if (sorted[0]?.source) {
    const s = sorted[0].source;
    lines.push(`Source checkpoint: \`${s.model}\`${s.revision ? ` revision \`${s.revision}\`` : ''}${s.commit ? ` (commit \`${s.commit}\`)` : ''}.`, '');
  }
  for (const m of sorted) {
    lines.push(`## ${m.archive.path}`, '');
    lines.push(`${formatBytes(m.archive.size)}, sha256 \`${m.archive.sha256}\`. Recipe: ${recipeLine(m)}`, '');
    lines.push('| file | size | sha256 |', '|---|---:|---|');
    for (const f of m.files) lines.push(`| \`${f.path}\` | ${formatBytes(f.size)} | \`${f.sha256}\` |`);
    lines.push('');
  }
  lines.push(
    '## Loading',
    '',
    'Unpack an archive; its folder is a model directory that [transcribe-rs](https://github.com/cjpais/transcribe-rs)' +
      " (qwen3 engine) and the Handy app load as is; pick the quantized variant in the engine's options (it falls back" +
      ' to the float encoder).',
    '',
    'With the qwen3-onnx CLI:',
    '',
    '```sh',
    `tar -xzf ${sorted[0]?.archive.path ?? 'qwen3-asr-0.6b-int4.tar.gz'}`,
    `npx qwen3-onnx transcribe --model-dir ${sorted[0]?.archive.path.replace(/\.tar\.gz$/, '') ?? 'qwen3-asr-0.6b-int4'}${sorted[0] && sorted[0].variant !== 'fp32' ? ` --variant ${sorted[0].variant}` : ''} audio.wav`,
    '```',
    '',
    'With onnxruntime directly: run `encoder.onnx` on the log-mel `mel [1,128,T]` (Whisper features: 16 kHz,' +
      ' n_fft 400, hop 160, 128 Slaney bins), build the chat prompt with `<|audio_pad|>` repeated once per audio' +
      ' feature, run `decoder_init` with `input_ids`, `position_ids`, `audio_features` and `audio_offset`, then' +
      ' feed `decoder_step` one embedding row from `embed_tokens.bin` per token, handing `present_keys` /' +
      ' `present_values` back as `past_keys` / `past_values`, until `<|im_end|>` or `<|endoftext|>`.',
    '',
    ...sherpaLoading(sorted),
    'Every archive is reproducible: the same checkpoint and options give byte-identical files.' +
      ' Each carries its own `manifest.json` (every file with its size and sha256), so a downloaded' +
      ' archive proves itself; `SHA256SUMS` and the `*.manifest.json` beside each archive add the' +
      " archive's own checksum; `qwen3-onnx verify-package <archive>` checks them all.",
    '',
  );
  return lines.join('\n');
}

/** The sherpa-onnx layout's archives (conv_frontend + encoder + decoder + tokenizer/): how to run them. */
function sherpaLoading(manifests: PackageManifest[]): string[] {
  const sherpa = manifests.filter((m) => m.files.some((f) => /^conv_frontend(\.[a-z0-9]+)?\.onnx$/.test(f.path)));
  if (sherpa.length === 0) return [];
  const top = sherpa[0].archive.path.replace(/\.tar\.gz$/, '');
  const graph = (name: string): string => sherpa[0].files.find((f) => f.path === `${name}.${sherpa[0].variant}.onnx`)?.path ?? `${name}.onnx`;
  return [
    `The \`-sherpa-onnx-\` archives (${sherpa.map((m) => `\`${m.archive.path}\``).join(', ')}) unpack to the folder`
      + ' [sherpa-onnx](https://github.com/k2-fsa/sherpa-onnx) (C++, Node, Python, WASM, Android, iOS) loads: `conv_frontend`,'
      + ' `encoder` and one `decoder` graph over full-size cache buffers, and `tokenizer/`; each archive\'s README.md has'
      + ' the sherpa-onnx-node snippet.',
    '',
    '```sh',
    `sherpa-onnx-offline --qwen3-asr-conv-frontend=${top}/${graph('conv_frontend')} --qwen3-asr-encoder=${top}/${graph('encoder')} \\`,
    `  --qwen3-asr-decoder=${top}/${graph('decoder')} --qwen3-asr-tokenizer=${top}/tokenizer speech.wav`,
    '```',
    '',
  ];
}
