import type { PackageManifest } from './manifest.js';
import { formatBytes } from './model-card.js';

/**
 * The model card (dist/README.md) of a forced-aligner build: what the archives hold and how to run
 * them (the ASR card, model-card.ts, describes decoder_init / decoder_step / embed_tokens.bin).
 */

/** A variant's own recipe entries (int4 keys bare, others suffixed `.<variant>`; quantize/aligner.ts). */
function ownRecipe(m: PackageManifest): Array<[string, string]> {
  return Object.entries(m.recipe ?? {}).flatMap(([k, v]): Array<[string, string]> => {
    if (m.variant === 'int4') return k.includes('.') ? [] : [[k, v]];
    return k.endsWith(`.${m.variant}`) ? [[k.slice(0, -m.variant.length - 1), v]] : [];
  });
}

function recipeLine(m: PackageManifest): string {
  const own = ownRecipe(m);
  if (own.length === 0) return 'float32 weights exported op by op from the BF16 safetensors (no tracer).';
  return `weight-only round-to-nearest quantisation (${own.map(([k, v]) => `\`${k}\`: \`${v}\``).join(', ')});`
    + ' the encoder\'s Conv2d stem stays float32; the token lookup is GatherBlockQuantized over its own table (the head is not tied).';
}

export function alignerModelCard(manifests: PackageManifest[]): string {
  const sorted = [...manifests].sort((a, b) => (a.archive.path < b.archive.path ? -1 : 1));
  const base = sorted.find((m) => m.source)?.source?.model ?? 'Qwen/Qwen3-ForcedAligner-0.6B';
  const top = sorted[0]?.archive.path.replace(/\.tar\.gz$/, '') ?? 'qwen3-forcedaligner-0.6b-int4';
  const lines: string[] = [
    '---', 'license: apache-2.0', `base_model: ${base}`, 'library_name: onnxruntime',
    'tags:', '  - onnx', '  - qwen3-asr', '  - forced-alignment', '  - word-timestamps', '---', '',
    `# ${base.split('/').pop()} for ONNX Runtime`, '',
    `ONNX export of [${base}](https://huggingface.co/${base}) built by qwen3-onnx ${sorted[0]?.tool.version ?? ''}`
      + ' straight from the safetensors: the audio encoder (`encoder.onnx`) and one decoder graph (`aligner_decoder.onnx`)'
      + ' for the aligner\'s single causal pass, which embeds the ids, writes the audio features over the `<|audio_pad|>`'
      + ' tokens, and applies the 5000-class timestamp head only at the `<timestamp>` tokens'
      + ' (`timestamp_logits [1, K, 5000]`, `timestamp_classes [1, K]`, one class = 80 ms).', '',
  ];
  if (sorted[0]?.source) {
    const s = sorted[0].source;
    lines.push(`Source checkpoint: \`${s.model}\`${s.revision ? ` revision \`${s.revision}\`` : ''}${s.commit ? ` (commit \`${s.commit}\`)` : ''}.`, '');
  }
  for (const m of sorted) {
    lines.push(`## ${m.archive.path}`, '', `${formatBytes(m.archive.size)}, sha256 \`${m.archive.sha256}\`. Recipe: ${recipeLine(m)}`, '');
    lines.push('| file | size | sha256 |', '|---|---:|---|');
    for (const f of m.files) lines.push(`| \`${f.path}\` | ${formatBytes(f.size)} | \`${f.sha256}\` |`);
    lines.push('');
  }
  lines.push(
    '## Loading', '',
    'With the qwen3-onnx CLI (words with start and end times; `--json`, `--srt`, `--vtt`):', '',
    '```sh',
    `tar -xzf ${sorted[0]?.archive.path ?? `${top}.tar.gz`}`,
    `npx qwen3-onnx align --model-dir ${top}${sorted[0] && sorted[0].variant !== 'fp32' ? ` --variant ${sorted[0].variant}` : ''} --language English audio.wav --text "the transcript"`,
    '```', '',
    'With onnxruntime directly: run the encoder on the log-mel `mel [1,128,T]` (Whisper features: 16 kHz, n_fft 400,'
      + ' hop 160, 128 Slaney bins) to get `audio_features [1,N,1024]`; build `input_ids` as `<|audio_start|>`, N x'
      + ' `<|audio_pad|>`, `<|audio_end|>`, then each word\'s tokens followed by two `<timestamp>` (id in config.json'
      + ' `timestamp_token_id`); run `aligner_decoder` on both; `timestamp_classes` x `timestamp_segment_ms` gives the'
      + ' start and end of each word in order (the official code then repairs non-monotonic values).', '',
    'Every archive is reproducible: the same checkpoint and options give byte-identical files. Each carries its own'
      + ' `manifest.json`; `SHA256SUMS` and the `*.manifest.json` beside each archive add the archive\'s own checksum;'
      + ' `qwen3-onnx verify-package <archive>` checks them all.', '',
  );
  return lines.join('\n');
}
