import { rmSync } from 'node:fs';

/**
 * Paths a run is writing (temp files, staging folders, lock files) that must disappear if the
 * run is interrupted. Writers register a path while it exists and unregister it once it is
 * renamed into place or removed; on SIGINT / SIGTERM / SIGHUP the CLI removes whatever is still
 * registered, synchronously, before it exits (a signal handler cannot wait for promises).
 * What a SIGKILL leaves behind is swept by the next run (common/debris.ts).
 */

interface Pending { path: string; onInterrupt: () => void }
const pending = new Set<Pending>();

/**
 * Registers what to do with `path` if the run is interrupted (default: remove it); call the
 * returned function once the path is gone or final. `onInterrupt` must be synchronous.
 */
export function trackTemp(path: string, onInterrupt?: () => void): () => void {
  const entry: Pending = { path, onInterrupt: onInterrupt ?? (() => rmSync(path, { recursive: true, force: true })) };
  pending.add(entry);
  return () => { pending.delete(entry); };
}

/** Runs every registered action now (best effort; newest first). */
export function removeTrackedTemps(): void {
  for (const entry of [...pending].reverse()) {
    try { entry.onInterrupt(); } catch { /* nothing more can be done while exiting */ }
    pending.delete(entry);
  }
}

/** The paths still registered (for tests). */
export function trackedTemps(): string[] {
  return [...pending].map((e) => e.path);
}

const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };
let installed = false;

/**
 * Installs the interrupt handlers once (the CLI does this at start): each removes the tracked
 * temp paths, says so on stderr in one line, and exits with the conventional 128+signal code.
 */
export function installInterruptCleanup(prefix = 'qwen3-onnx'): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of Object.entries(EXIT_CODES)) {
    process.on(signal, () => {
      removeTrackedTemps();
      process.stderr.write(`${prefix}: error: interrupted (${signal}); partial output removed\n`);
      process.exit(code);
    });
  }
}
