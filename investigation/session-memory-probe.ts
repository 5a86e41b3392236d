/**
 * What each onnxruntime session of a model directory holds in memory: opens the named graphs one
 * after another (all kept open), printing the process's resident memory split into anonymous
 * and file-backed pages after each open, then after releasing them all. Run one configuration
 * per process. (not a test)
 *
 *   node dist/investigation/session-memory-probe.js --model-dir DIR --graphs encoder.onnx,decoder_init.onnx,decoder_step.onnx [--no-prepack] [--no-arena]
 *
 * File-backed pages are the external-data weights onnxruntime maps from disk; RSS counts a page
 * once per mapping, so two sessions mapping the same weights file show it twice.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { stepFeeds } from './step-feeds.js';

const f = new Command('session-memory-probe')
  .requiredOption('--model-dir <dir>').requiredOption('--graphs <list>', 'comma-separated graph files, opened in order')
  .option('--no-prepack', 'session.disable_prepacking')
  .option('--no-arena', 'enableCpuMemArena: false')
  .option('--no-mem-pattern', 'enableMemPattern: false')
  .option('--step', 'run each decoder_step graph once at 32 past tokens after opening it')
  .parse(process.argv).opts<{ modelDir: string; graphs: string; prepack: boolean; arena: boolean; memPattern: boolean; step?: boolean }>();

function memory(): { rssMiB: number; anonMiB: number; fileMiB: number; hwmMiB: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const mib = (key: string): number => Math.round(Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024);
  return { rssMiB: mib('VmRSS'), anonMiB: mib('RssAnon'), fileMiB: mib('RssFile'), hwmMiB: mib('VmHWM') };
}

const options: ort.InferenceSession.SessionOptions = {
  executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
  enableCpuMemArena: f.arena, enableMemPattern: f.memPattern,
  ...(f.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
};
const rows: Record<string, unknown>[] = [{ step: 'start', ...memory() }];
const sessions: ort.InferenceSession[] = [];
for (const graph of f.graphs.split(',')) {
  const t = performance.now();
  sessions.push(await ort.InferenceSession.create(join(f.modelDir, graph), options));
  rows.push({ step: `open ${graph}`, loadMs: Math.round(performance.now() - t), ...memory() });
  if (f.step && graph.startsWith('decoder_step')) {
    await sessions[sessions.length - 1].run(await stepFeeds(f.modelDir, 32));
    rows.push({ step: `ran ${graph}`, ...memory() });
  }
}
for (const s of sessions) await s.release();
rows.push({ step: 'released all', ...memory() });
process.stdout.write(`${JSON.stringify({ prepack: f.prepack, arena: f.arena, memPattern: f.memPattern, rows })}\n`);
