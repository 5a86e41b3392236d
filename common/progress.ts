/**
 * Progress for long work: a live line on a terminal, nothing in CI or with --json
 * (machine output must stay clean on stdout; progress goes to stderr only).
 */
export interface Progress {
  /** Starts or updates a task: `done` of `total` units (bytes, tensors, files). */
  update(task: string, done: number, total: number): void;
  /** A one-line message for humans (suppressed when quiet). */
  info(message: string): void;
  /** Ends the current live line. */
  finish(): void;
}

export interface ProgressOptions {
  json?: boolean;
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
}

export function createProgress(opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const silent = Boolean(opts.json || opts.quiet || process.env.CI);
  const live = !silent && Boolean(stream.isTTY);
  let lastDraw = 0;
  let open = false;
  return {
    update(task, done, total) {
      if (!live) return;
      const now = Date.now();
      if (done < total && now - lastDraw < 100) return;
      lastDraw = now;
      const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
      stream.write(`\r\x1b[K${task} ${pct}% (${formatCount(done)}/${formatCount(total)})`);
      open = true;
    },
    info(message) {
      if (silent) return;
      if (open) { stream.write('\n'); open = false; }
      stream.write(`${message}\n`);
    },
    finish() {
      if (open) { stream.write('\n'); open = false; }
    },
  };
}

/** A progress sink that prints nothing (library calls and tests). */
export const silentProgress: Progress = { update() {}, info() {}, finish() {} };

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}
