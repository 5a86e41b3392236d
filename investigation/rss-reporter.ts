/**
 * Preload for `node --import rss-reporter.js <script>`: on exit, writes the process's peak RSS in
 * KiB (`process.resourceUsage().maxRSS`) to the file named by $QWEN3_BENCH_RSS_FILE. Used by
 * measured-child.ts where /usr/bin/time is absent.
 */
import { writeFileSync } from 'node:fs';

export const RSS_FILE_ENV = 'QWEN3_BENCH_RSS_FILE';

const target = process.env[RSS_FILE_ENV];
if (target) {
  process.on('exit', () => {
    writeFileSync(target, `${process.resourceUsage().maxRSS}\n`);
  });
}
