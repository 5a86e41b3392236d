import { appendFile, readFile } from 'node:fs/promises';
import { fsError } from '../common/errors.js';

/**
 * INVESTIGATION.md entries: `## N. Title`, then **Hypothesis.** **Command.** **Machine.**
 * **Result.** **Verdict.** paragraphs. Numbers are never reused: the next one is read from the
 * file right before appending (other people append too).
 */

export interface LogEntry {
  title: string;
  hypothesis: string;
  command: string;
  machine: string;
  result: string;
  verdict: string;
}

export function highestEntryNumber(text: string): number {
  let max = 0;
  for (const m of text.matchAll(/^## (\d+)\./gm)) max = Math.max(max, Number(m[1]));
  return max;
}

export function formatEntry(n: number, e: LogEntry): string {
  return [
    `## ${n}. ${e.title}`, '',
    `**Hypothesis.** ${e.hypothesis}`, '',
    `**Command.** ${e.command}`, '',
    `**Machine.** ${e.machine}`, '',
    `**Result.**`, '', e.result.trimEnd(), '',
    `**Verdict.** ${e.verdict}`, '',
  ].join('\n');
}

/**
 * Appends the entry with the next free number and returns that number. Uses an O_APPEND write,
 * not a temp-file rename, so an entry appended by someone else meanwhile is never overwritten.
 */
export async function appendEntry(path: string, entry: LogEntry): Promise<number> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) { throw fsError('cannot read', path, err); }
  const n = highestEntryNumber(text) + 1;
  const sep = text.endsWith('\n\n') ? '' : text.endsWith('\n') ? '\n' : '\n\n';
  try { await appendFile(path, `${sep}${formatEntry(n, entry)}`); } catch (err) { throw fsError('cannot append to', path, err); }
  return n;
}
