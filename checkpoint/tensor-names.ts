/**
 * The one home of Qwen3-ASR tensor naming: the names the toolkit works with (the original
 * checkpoint's, `thinker.*`: every graph initializer, reference weight and quantized tensor is
 * named after them) and the renames of the transformers-native `-hf` checkpoints
 * (shared/CONTRACT.md). Every stage that meets an `-hf` name (reading, the fixture writer,
 * inspect) goes through this table, like llama.cpp's gguf-py tensor_mapping.
 *
 *   original (canonical)            -hf
 *   thinker.audio_tower.proj1.      model.multi_modal_projector.linear_1.
 *   thinker.audio_tower.proj2.      model.multi_modal_projector.linear_2.
 *   thinker.audio_tower.            model.audio_tower.
 *   thinker.model.                  model.language_model.
 *   thinker.lm_head.                lm_head.        (ASR: the vocabulary head)
 *   thinker.lm_head.                score.          (forced aligner: the classify_num-class head)
 *
 * The forced aligner (Qwen3-ForcedAligner-0.6B, shared/ALIGNER.md) stores the same tensors as an
 * ASR checkpoint except its head: `thinker.lm_head.weight` [classify_num, hidden], never tied,
 * which its -hf checkpoint calls `score.weight` (a token-classification head).
 */

export type CheckpointFormat = 'original' | 'hf';

export const CHECKPOINT_FORMATS: readonly CheckpointFormat[] = ['original', 'hf'];

/** How each format is described in messages and records. */
export const FORMAT_LABEL: Record<CheckpointFormat, string> = {
  original: 'original Qwen3-ASR layout (thinker.* tensors, config.json with thinker_config)',
  hf: 'transformers-native -hf layout (model.* / lm_head.* tensors, flat config.json with audio_config + text_config)',
};

export const AUDIO_PREFIX = 'thinker.audio_tower.';
export const TEXT_PREFIX = 'thinker.model.';
export const EMBED_TOKENS = 'thinker.model.embed_tokens.weight';
export const LM_HEAD = 'thinker.lm_head.weight';

export interface PrefixRename { original: string; hf: string }

/**
 * Prefix renames, most specific first (proj1/proj2 before the rest of the audio tower). The
 * rest of a name (layer index, module path, `.weight`/`.bias`) is the same in both formats;
 * q/k/v stay separate in both.
 */
export const TENSOR_RENAMES: readonly PrefixRename[] = [
  { original: 'thinker.audio_tower.proj1.', hf: 'model.multi_modal_projector.linear_1.' },
  { original: 'thinker.audio_tower.proj2.', hf: 'model.multi_modal_projector.linear_2.' },
  { original: AUDIO_PREFIX, hf: 'model.audio_tower.' },
  { original: TEXT_PREFIX, hf: 'model.language_model.' },
  { original: 'thinker.lm_head.', hf: 'lm_head.' },
];

/** Which model a checkpoint holds: the ASR model or the forced aligner (only the head's -hf name differs). */
export type ModelKind = 'asr' | 'forced_aligner';

/** The forced aligner's head in the -hf checkpoint (a token-classification `score` layer). */
export const ALIGNER_HEAD_RENAME: PrefixRename = { original: 'thinker.lm_head.', hf: 'score.' };

/** The rename table of one model kind: the aligner's head rule replaces the vocabulary head's. */
export function renamesFor(kind: ModelKind): readonly PrefixRename[] {
  return kind === 'forced_aligner'
    ? TENSOR_RENAMES.map((r) => (r.original === ALIGNER_HEAD_RENAME.original ? ALIGNER_HEAD_RENAME : r))
    : TENSOR_RENAMES;
}

/** The -hf name of a canonical (original) tensor name; undefined when no rename covers it. */
export function hfNameOf(original: string, kind: ModelKind = 'asr'): string | undefined {
  const rule = renamesFor(kind).find((r) => original.startsWith(r.original));
  return rule ? rule.hf + original.slice(rule.original.length) : undefined;
}

/**
 * The canonical (original) name of an -hf tensor name; undefined when no rename covers it.
 * `score.*` is the aligner's head, so it maps to `thinker.lm_head.*` whatever the kind (an ASR
 * checkpoint holding one is then refused by the shape check, naming it).
 */
export function originalNameOf(hf: string): string | undefined {
  for (const kind of ['asr', 'forced_aligner'] as const) {
    const rule = renamesFor(kind).find((r) => hf.startsWith(r.hf));
    if (!rule) continue;
    const original = rule.original + hf.slice(rule.hf.length);
    // model.audio_tower.proj1.x would map onto proj1 by the general rule; -hf moved proj1/proj2
    // to the projector, so such a name is not a rename of anything.
    if (hfNameOf(original, kind) === hf) return original;
  }
  return undefined;
}

/** A tensor's name as the given format stores it (for messages). */
export function storedName(original: string, format: CheckpointFormat, kind: ModelKind = 'asr'): string {
  return format === 'hf' ? hfNameOf(original, kind) ?? original : original;
}

/** The -hf prefixes, for messages. */
export const HF_PREFIXES: readonly string[] = [...new Set([...TENSOR_RENAMES, ALIGNER_HEAD_RENAME].map((r) => r.hf))];

/** Which format a stored tensor name belongs to, judged by its prefix alone. */
export function formatOfName(name: string): CheckpointFormat | undefined {
  if (name.startsWith('thinker.')) return 'original';
  if (name.startsWith('model.') || name.startsWith('lm_head.') || name.startsWith(ALIGNER_HEAD_RENAME.hf)) return 'hf';
  return undefined;
}
