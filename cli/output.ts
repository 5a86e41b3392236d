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

/** Parses an integer flag strictly; commander passes the raw string. */
export function intOption(flag: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${flag} must be an integer, got "${value}"`);
    return n;
  };
}
