/**
 * The Hugging Face access token, found where Python's huggingface_hub looks:
 * $HF_TOKEN (or the legacy $HUGGING_FACE_HUB_TOKEN), else the file at $HF_TOKEN_PATH,
 * else $HF_HOME/token (HF_HOME defaults to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface).
 * No token is fine: public repos need none.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fsError } from '../common/errors.js';

export async function hubToken(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const fromEnv = (env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN)?.trim();
  if (fromEnv) return fromEnv;
  const file = env.HF_TOKEN_PATH ?? join(hfHome(env), 'token');
  let text: string;
  try {
    text = await readFile(expandHome(file), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw fsError('cannot read token file', file, err);
  }
  return text.trim() || undefined;
}

function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

const expandHome = (p: string): string => (p.startsWith('~') ? join(homedir(), p.slice(1)) : p);
