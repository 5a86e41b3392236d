import { InvalidArgumentError } from 'commander';
import { createProgress, type Progress } from '../common/progress.js';

/** Options every command shares. */
export interface CommonOptions { json?: boolean; quiet?: boolean }

/** Prints a command's result: JSON on stdout with --json, otherwise the human text. */
export function emitResult(opts: CommonOptions, result: unknown, human: () => string): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else if (!opts.quiet) {
    const text = human();
    if (text) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

export function progressFor(opts: CommonOptions): Progress {
  return createProgress({ json: opts.json, quiet: opts.quiet });
}

/** Parses an integer flag strictly, optionally within [min, max]; commander passes the raw string. */
export function intOption(flag: string, min?: number, max?: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`${flag} must be an integer, got "${value}"`);
    if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(`${flag} must be an integer from ${min ?? '-inf'} to ${max ?? 'inf'}, got "${value}"`);
    }
    return n;
  };
}

/**
 * The most threads any command starts. Each quantiser worker holds its own buffers, so an
 * unbounded count (`--threads 100000`) once grew to 12.6 GB before V8 gave up.
 */
export const MAX_THREADS = 256;

/** `--threads <n>`: 1..MAX_THREADS. */
export function threadsOption(): (value: string) => number {
  return intOption('--threads', 1, MAX_THREADS);
}
