import { SHERPA_TOKENIZER_DIR } from '../model-dir/layout.js';

/**
 * README.md inside a sherpa-onnx layout archive: the folder unpacks to exactly what sherpa-onnx's
 * Qwen3-ASR recognizer is pointed at, so the README gives the two ways users run it (the
 * `sherpa-onnx-offline` command line and sherpa-onnx-node) with this folder's own file names.
 */
export interface SherpaReadmeInput {
  /** The archive's top-level folder (`qwen3-asr-0.6b-sherpa-onnx-int4`). */
  top: string;
  /** The graph files this variant loads, by role. */
  convFrontend: string; encoder: string; decoder: string;
  variant: string;
  sizeLabel: string;
}

export const SHERPA_README = 'README.md';

export function sherpaReadme(r: SherpaReadmeInput): string {
  const d = r.top;
  return `# ${r.top}

Qwen3-ASR ${r.sizeLabel} (${r.variant}) in the layout sherpa-onnx loads: \`${r.convFrontend}\`,
\`${r.encoder}\`, \`${r.decoder}\` (weights in the \`.data\` files beside them, loaded by path) and
\`${SHERPA_TOKENIZER_DIR}/\`. Built by qwen3-onnx; \`manifest.json\` lists every file with its sha256.
Needs sherpa-onnx with Qwen3-ASR support (1.13 or newer).

## Command line

\`\`\`sh
sherpa-onnx-offline \\
  --qwen3-asr-conv-frontend=${d}/${r.convFrontend} \\
  --qwen3-asr-encoder=${d}/${r.encoder} \\
  --qwen3-asr-decoder=${d}/${r.decoder} \\
  --qwen3-asr-tokenizer=${d}/${SHERPA_TOKENIZER_DIR} \\
  --qwen3-asr-max-total-len=1024 --qwen3-asr-max-new-tokens=256 \\
  --num-threads=2 speech.wav
\`\`\`

## Node (sherpa-onnx-node)

\`\`\`js
const sherpa = require('sherpa-onnx-node');
const m = '${d}';
const recognizer = new sherpa.OfflineRecognizer({
  modelConfig: {
    qwen3Asr: { convFrontend: \`\${m}/${r.convFrontend}\`, encoder: \`\${m}/${r.encoder}\`,
                decoder: \`\${m}/${r.decoder}\`, tokenizer: \`\${m}/${SHERPA_TOKENIZER_DIR}\`,
                maxTotalLen: 1024, maxNewTokens: 256 },
    tokens: '', numThreads: 2, provider: 'cpu', debug: 0,
  },
});
const wave = sherpa.readWave('speech.wav');
const stream = recognizer.createStream();
stream.setOption('language', 'English');   // optional; default: detect
stream.acceptWaveform({ sampleRate: wave.sampleRate, samples: wave.samples });
recognizer.decode(stream);
console.log(recognizer.getResult(stream).text);
\`\`\`

Do not load sherpa-onnx-node in a process that also loads onnxruntime-node: each bundles its own
onnxruntime.
`;
}
