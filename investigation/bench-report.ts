import type { BenchResult } from './bench-run.js';
import type { BandwidthResult } from './memory-bandwidth.js';
import { describeMachine } from './machine-info.js';
import type { LogEntry } from './investigation-log.js';

/** The bench result as markdown tables (printed, and the Result of the INVESTIGATION.md entry). */

const gb = (n: number): string => `${(n / 1e9).toFixed(2)} GB`;
const ms = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function formatTables(r: BenchResult): string {
  const parts: string[] = [];
  const rss = r.stages[0]?.rssMethod === 'time' ? '`/usr/bin/time -f %M`' : '`process.resourceUsage().maxRSS` in the child';
  const sherpa = r.sherpa;
  const label = (layout: string, variant: string): string => (layout === 'split' ? variant : `${layout} ${variant}`);
  parts.push(table(['stage (child process)', 'wall s', `peak RSS MiB (${rss})`],
    [...r.stages, ...(sherpa?.stages ?? [])].map((s) => [s.stage, s.wallSeconds.toFixed(1), s.peakRssMiB.toFixed(0)])));
  const gen = r.checkpoint.generatedSeconds === null ? 'given' : `generated in ${r.checkpoint.generatedSeconds.toFixed(0)} s`;
  parts.push(`export + quantize + package int4: **${r.pipelineSeconds.toFixed(1)} s**. Checkpoint ${gb(r.checkpoint.bytes)} (${gen}).`);

  parts.push(table(['variant', 'files', 'unpacked', 'tar.gz', 'Python unpacked', 'Python tar.gz'],
    [...r.sizes.map((s) => ({ ...s, layout: 'split' })), ...(sherpa?.sizes ?? []).map((s) => ({ ...s, layout: 'sherpa-onnx' }))].map((s) => [label(s.layout, s.variant), String(s.files), gb(s.unpackedBytes), gb(s.archiveBytes),
      s.reference ? gb(s.reference.unpackedBytes) : '-', s.reference ? gb(s.reference.archiveBytes) : '-'])));

  const pasts = r.runtime[0]?.steps.map((s) => s.past) ?? [];
  const reps = `median of ${r.options.reps} after ${r.options.warmup} warm-up`;
  parts.push(table(['variant', `load ms (median of ${r.options.loadReps})`, `encoder ms / s audio (${r.runtime[0]?.audioSeconds ?? 0} s)`,
    `prefill ms (${r.runtime[0]?.promptTokens ?? 0} tokens)`, ...pasts.map((p) => `decoder_step ms @${p}`)],
  [...r.runtime.map((x) => ({ ...x, layout: 'split' })), ...(sherpa?.runtime ?? []).map((x) => ({ ...x, layout: 'sherpa-onnx' }))].map((x) => [label(x.layout, x.variant), ms(x.load.medianMs), ms(x.encoderMsPerAudioSecond), ms(x.prefill.medianMs), ...x.steps.map((s) => ms(s.timing.medianMs))])));
  parts.push(`Timed figures: ${reps}; onnxruntime default threads.${sherpa ? ' sherpa-onnx rows: our runtime on that layout (one decoder graph; a step is one decoder call over the cache buffers, its deltas written back).' : ''}`);

  const bw = (b: BandwidthResult): string => `copy (2 x bytes / time) 1 thread ${b.singleThreadGBps} GB/s, ${b.threads} threads `
    + `${b.multiThreadGBps} GB/s; read (onnxruntime ReduceSum) 1 thread ${b.readSingleThreadGBps} GB/s, ${b.threads} threads ${b.readMultiThreadGBps} GB/s`;
  parts.push(`Memory bandwidth, best of ${r.bandwidth.reps} passes over ${(r.bandwidth.bytesPerCopy / 2 ** 20).toFixed(0)} MiB: before the stages `
    + `${bw(r.bandwidth)}; after the runtime figures ${bw(r.bandwidthAfterRuntime)}. The bound uses the best, **${r.boundGBps} GB/s**.`);
  parts.push(table(['variant', 'past', 'step ms', 'must read (weights + KV)', 'bound ms', 'step / bound', 'step ms, logits only (no cache copy to JS)'],
    [...r.bounds.map((x) => ({ ...x, layout: 'split' })), ...(sherpa?.bounds ?? []).map((x) => ({ ...x, layout: 'sherpa-onnx' }))].map((x) => [label(x.layout, x.variant), String(x.past), ms(x.stepMs), gb(x.bytesRead), ms(x.boundMs), `${x.ratio.toFixed(2)}x`, ms(x.logitsOnlyMs)])));

  if (r.threadSweep) {
    const s = r.threadSweep;
    parts.push(table(['intra-op threads', `${s.variant} decoder_step ms @${s.past}`],
      s.points.map((p) => [String(p.threads), ms(p.step.medianMs)])));
    parts.push(`Best intra-op thread count for decode on this machine: **${s.bestThreads}**.`);
  }
  if (sherpa) {
    const c = sherpa.clip;
    parts.push(table(['runtime (int4 files)', 'load ms', `recognise ms (median of ${c.reps})`, 'tokens', 'ms / token'],
      c.runs.map((x) => [x.runtime, ms(x.loadMs), ms(x.recognise.medianMs), String(x.tokens), x.tokens ? ms(x.recognise.medianMs / x.tokens) : '-'])));
    parts.push(`Clip \`${c.file}\`, at most ${c.maxNewTokens} new tokens, ${c.threads} intra-op threads for every runtime; recognise = features + encoder + prefill + steps (sherpa-onnx-node: createStream .. getResult).`);
  }
  parts.push(`Load average (1 min) ${r.loadAverage.start} at start, ${r.loadAverage.end} at end; total ${r.totalSeconds.toFixed(0)} s.`);
  return parts.join('\n\n');
}

/** An INVESTIGATION.md entry for one bench run. */
export function benchEntry(r: BenchResult, command: string, resultsPath: string, hypothesis?: string): LogEntry {
  const int4At = (past: number) => r.bounds.find((x) => x.variant === 'int4' && x.past === past);
  const b200 = int4At(200) ?? r.bounds.find((x) => x.variant === 'int4');
  const verdicts: string[] = [];
  if (b200) verdicts.push(`int4 decoder_step @${b200.past} is ${b200.ratio.toFixed(2)}x the bandwidth bound (target <= 1.5x: ${b200.ratio <= 1.5 ? 'met' : 'not met'})`);
  if (r.preset === '0.6b') verdicts.push(`export + quantize + package int4 took ${r.pipelineSeconds.toFixed(0)} s (target < 60 s: ${r.pipelineSeconds < 60 ? 'met' : 'not met'})`);
  const int4 = r.sizes.find((s) => s.variant === 'int4');
  if (int4?.reference) {
    verdicts.push(`int4 package ${gb(int4.unpackedBytes)} / ${gb(int4.archiveBytes)} tar.gz vs Python ${gb(int4.reference.unpackedBytes)} / ${gb(int4.reference.archiveBytes)}`);
  }
  if (r.threadSweep) verdicts.push(`best decode thread count ${r.threadSweep.bestThreads}`);
  const s200 = r.sherpa?.bounds.find((x) => x.variant === 'int4' && x.past === 200) ?? r.sherpa?.bounds.find((x) => x.variant === 'int4');
  if (s200) {
    verdicts.push(`sherpa-onnx layout int4 step @${s200.past} on our runtime is ${s200.ratio.toFixed(2)}x the bound, all outputs to JS included (target <= 2.0x: ${s200.ratio <= 2 ? 'met' : 'not met'}${b200 ? `; split ${b200.ratio.toFixed(2)}x` : ''})`);
  }
  const clip = r.sherpa?.clip.runs;
  if (clip?.length) verdicts.push(`on the clip: ${clip.map((x) => `${x.runtime} ${ms(x.recognise.medianMs)} ms for ${x.tokens} tokens`).join(', ')}`);
  return {
    title: `Bench: ${r.preset} build${r.options.attention === 'fused' ? ' (fused attention)' : ''}, sizes and decode speed against the bandwidth bound`,
    hypothesis: hypothesis ?? 'Baseline: what the toolkit costs today on this machine, and how far decode is from the memory-bandwidth bound.',
    command: `\`${command}\` (results: \`${resultsPath}\`)`,
    machine: `${describeMachine(r.machine)}; load average ${r.loadAverage.start} -> ${r.loadAverage.end}.`,
    result: formatTables(r),
    verdict: `${verdicts.join('; ')}.`,
  };
}
