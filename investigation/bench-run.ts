import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PackageManifestSchema, type PackageManifest } from '../package/manifest.js';
import { generateCheckpoint } from '../fixtures/generate.js';
import type { PresetName } from '../fixtures/presets.js';
import type { DecoderAttention } from '../graph-builder/decoder.js';
import { machineInfo, type MachineInfo } from './machine-info.js';
import { measureBandwidth, type BandwidthResult } from './memory-bandwidth.js';
import { runMeasured, type ChildMeasure, type RssMethod } from './measured-child.js';
import { measureRuntime, threadSweep, type RuntimeFigures, type ThreadSweep } from './runtime-bench.js';
import { round } from './stats.js';
import { measureSherpaRuntime, timeOurClip, timeSherpaClip, type ClipRun } from './sherpa-runtime-bench.js';
import { AsrModel } from '../runtime/session.js';
import { SherpaAsrModel } from '../runtime/sherpa-session.js';

/**
 * `npm run bench`: builds a synthetic checkpoint of a preset and measures, on this machine,
 * each CLI stage (wall time, peak RSS), the packaged sizes, the produced models on
 * onnxruntime-node, the memory bandwidth, how far decode is from the bandwidth bound, and the
 * best intra-op thread count. Stages run as child processes of the built CLI
 * (`dist/cli/main.js`); runtime figures are taken in this process with runtime/.
 *
 * Work layout (all under one temp dir, removed at the end unless `keep`):
 *   checkpoint/      generated (or the caller's `checkpoint`, never deleted)
 *   model/           export + quantize output; the runtime figures are taken on it
 *   dist/            package output (archives deleted once measured)
 *   build/           the end-to-end `build` (deleted once measured)
 */

export interface BenchOptions {
  preset: PresetName;
  /** Parent of the temp work dir (default: os tmpdir). */
  workRoot: string;
  /** Use this checkpoint instead of generating one. */
  checkpoint?: string;
  warmup: number;
  reps: number;
  loadReps: number;
  audioSeconds: number;
  pastLengths: number[];
  sweepThreads: number[];
  sweepPast: number;
  bandwidthBytes: number;
  bandwidthReps: number;
  bandwidthThreads: number;
  /** Also time the one-shot `build` (export+quantize+compare+package again). */
  endToEnd: boolean;
  /** Decoder attention of the export (graph-builder: plain ONNX ops or com.microsoft fused ops). */
  attention: DecoderAttention;
  rssMethod: RssMethod;
  /**
   * Also export, quantise and package the sherpa-onnx layout, measure it with our runtime beside the
   * split layout, and time sherpa-onnx-node on its int4 files (investigation/sherpa-runtime-bench.ts).
   */
  sherpa: boolean;
  /** The clip both runtimes recognise end to end, and the tokens they generate on it. */
  clip: string;
  clipTokens: number;
  keep: boolean;
  log: (message: string) => void;
}

export interface StageFigure { stage: string; command: string; wallSeconds: number; peakRssMiB: number; rssMethod: RssMethod }

export interface SizeFigure {
  variant: string;
  files: number;
  unpackedBytes: number;
  archiveBytes: number;
  /** The Python pipeline's published sizes (CONTRACT.md), where there is one. */
  reference: { unpackedBytes: number; archiveBytes: number } | null;
}

export interface BoundFigure {
  variant: string;
  past: number;
  stepMs: number;
  /** The step fetching only logits (no cache copy into JS). */
  logitsOnlyMs: number;
  bytesRead: number;
  boundMs: number;
  /** stepMs / boundMs: 1 is decode at full memory bandwidth. */
  ratio: number;
}

/** The sherpa-onnx layout's figures, side by side with the split layout's. */
export interface SherpaLayoutBench {
  stages: StageFigure[];
  sizes: SizeFigure[];
  runtime: RuntimeFigures[];
  bounds: BoundFigure[];
  /** Our runtime on both layouts' int4 files and sherpa-onnx-node on the sherpa-onnx ones, same clip. */
  clip: { file: string; maxNewTokens: number; threads: number; reps: number; runs: ClipRun[] };
}

export interface BenchResult {
  format: 'qwen3-onnx-bench/1';
  startedAt: string;
  preset: PresetName;
  machine: MachineInfo;
  /** 1-minute load average before and after: other work on the box skews every figure. */
  loadAverage: { start: number; end: number };
  options: Omit<BenchOptions, 'log' | 'workRoot' | 'keep'>;
  /** Measured before the stages and again after the runtime figures; the bound uses the higher best. */
  bandwidth: BandwidthResult;
  bandwidthAfterRuntime: BandwidthResult;
  boundGBps: number;
  checkpoint: { path: string; generatedSeconds: number | null; bytes: number };
  stages: StageFigure[];
  /** export + quantize + package(int4): the time from checkpoint to shippable int4 archive. */
  pipelineSeconds: number;
  sizes: SizeFigure[];
  runtime: RuntimeFigures[];
  bounds: BoundFigure[];
  threadSweep: ThreadSweep | null;
  sherpa: SherpaLayoutBench | null;
  totalSeconds: number;
}

/** The Python pipeline's int4 package (CONTRACT.md "Reference numbers"). */
export const PYTHON_REFERENCE_SIZES: Partial<Record<PresetName, Record<string, { unpackedBytes: number; archiveBytes: number }>>> = {
  '0.6b': { int4: { unpackedBytes: 2.0e9, archiveBytes: 1.26e9 } },
  '1.7b': { int4: { unpackedBytes: 4.0e9, archiveBytes: 2.67e9 } },
};

export const VARIANTS = ['fp32', 'int4'] as const;

/** The repository root (where package.json is), from this module under src or dist. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'cli'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root above investigation/');
    dir = up;
  }
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

function sizeFigure(preset: PresetName, manifest: PackageManifest): SizeFigure {
  return {
    variant: manifest.variant,
    files: manifest.files.length,
    unpackedBytes: manifest.files.reduce((a, f) => a + f.size, 0),
    archiveBytes: manifest.archive.size,
    reference: PYTHON_REFERENCE_SIZES[preset]?.[manifest.variant] ?? null,
  };
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const loadStart = loadavg()[0];
  const root = repoRoot();
  const cli = join(root, 'dist', 'cli', 'main.js');
  const reporter = join(root, 'dist', 'investigation', 'rss-reporter.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx tsc -p tsconfig.json)`);
  const machine = await machineInfo();

  o.log(`memory bandwidth (${o.bandwidthReps} copies of ${(o.bandwidthBytes / 2 ** 20).toFixed(0)} MiB, 1 and ${o.bandwidthThreads} threads)`);
  const bandwidth = await measureBandwidth({ bytes: o.bandwidthBytes, reps: o.bandwidthReps, threads: o.bandwidthThreads });

  await mkdir(o.workRoot, { recursive: true });
  const work = await mkdtemp(join(resolve(o.workRoot), `qwen3-bench-${o.preset}-`));
  const stages: StageFigure[] = [];
  const stage = async (name: string, args: string[], into: StageFigure[] = stages): Promise<ChildMeasure> => {
    o.log(`stage ${name}: qwen3-onnx ${args.join(' ')}`);
    const m = await runMeasured(cli, args, { method: o.rssMethod, reporter });
    into.push({ stage: name, command: `qwen3-onnx ${args.join(' ')}`, wallSeconds: round(m.wallSeconds, 2), peakRssMiB: m.peakRssMiB, rssMethod: m.rssMethod });
    o.log(`  ${m.wallSeconds.toFixed(1)} s, peak RSS ${m.peakRssMiB} MiB`);
    return m;
  };
  try {
    let checkpoint = o.checkpoint ? resolve(o.checkpoint) : join(work, 'checkpoint');
    let generatedSeconds: number | null = null;
    if (!o.checkpoint) {
      o.log(`generating the ${o.preset} checkpoint`);
      const t0 = performance.now();
      checkpoint = (await generateCheckpoint({ preset: o.preset, output: checkpoint })).output;
      generatedSeconds = round((performance.now() - t0) / 1000, 2);
    }
    const checkpointBytes = await dirBytes(checkpoint);

    const model = join(work, 'model');
    const dist = join(work, 'dist');
    await stage('export', ['export', '--model', checkpoint, '--output', model, '--attention', o.attention, '--quiet']);
    await stage('quantize', ['quantize', '--model-dir', model, '--json']);
    const packageSizes = async (dir: string, into: StageFigure[], label: string): Promise<SizeFigure[]> => {
      const out: SizeFigure[] = [];
      for (const v of VARIANTS) {
        const m = await stage(`package ${label}${v}`, ['package', '--model-dir', dir, '--variant', v, '--output', dist, '--json'], into);
        const reply = JSON.parse(m.stdout) as { archivePath: string; manifest: unknown };
        out.push(sizeFigure(o.preset, PackageManifestSchema.parse(reply.manifest)));
        await rm(reply.archivePath, { force: true });
      }
      return out;
    };
    const sizes = await packageSizes(model, stages, '');
    const seconds = (name: string): number => stages.find((s) => s.stage === name)!.wallSeconds;
    const pipelineSeconds = round(seconds('export') + seconds('quantize') + seconds('package int4'), 2);

    const runtime: RuntimeFigures[] = [];
    for (const v of VARIANTS) {
      o.log(`runtime ${v}: load x${o.loadReps}, encoder ${o.audioSeconds} s audio, prefill, decoder_step at ${o.pastLengths.join('/')} past (${o.warmup} warm-up + ${o.reps} timed)`);
      runtime.push(await measureRuntime({
        modelDir: model, variant: v, warmup: o.warmup, reps: o.reps, loadReps: o.loadReps,
        audioSeconds: o.audioSeconds, pastLengths: o.pastLengths,
      }));
    }
    const sherpaModel = join(work, 'model-sherpa-onnx');
    const sherpaStages: StageFigure[] = [];
    const sherpaRuntime: RuntimeFigures[] = [];
    let sherpaSizes: SizeFigure[] = [];
    if (o.sherpa) {
      await stage('export sherpa-onnx', ['export', '--model', checkpoint, '--output', sherpaModel, '--layout', 'sherpa-onnx', '--quiet'], sherpaStages);
      await stage('quantize sherpa-onnx', ['quantize', '--model-dir', sherpaModel, '--json'], sherpaStages);
      sherpaSizes = await packageSizes(sherpaModel, sherpaStages, 'sherpa-onnx ');
      for (const v of VARIANTS) {
        o.log(`runtime sherpa-onnx ${v}: load x${o.loadReps}, encoder ${o.audioSeconds} s audio, prefill, decoder call at ${o.pastLengths.join('/')} past (${o.warmup} warm-up + ${o.reps} timed)`);
        sherpaRuntime.push(await measureSherpaRuntime({
          modelDir: sherpaModel, variant: v, warmup: o.warmup, reps: o.reps, loadReps: o.loadReps,
          audioSeconds: o.audioSeconds, pastLengths: o.pastLengths,
        }));
      }
    }
    // Bandwidth again right after the timed runs: on a shared host it moves with the neighbours'
    // load, and the bound should use what the memory system gave while the steps ran.
    o.log('memory bandwidth again, after the runtime figures');
    const bandwidthAfter = await measureBandwidth({ bytes: o.bandwidthBytes, reps: o.bandwidthReps, threads: o.bandwidthThreads });
    const bestGBps = Math.max(bandwidth.bestGBps, bandwidthAfter.bestGBps);
    const bytesPerSecond = bestGBps * 1e9;
    const boundsOf = (figures: RuntimeFigures[]): BoundFigure[] => figures.flatMap((r) => r.steps.map((s) => {
      const bytesRead = s.weightBytes + s.kvBytes;
      const boundMs = (bytesRead / bytesPerSecond) * 1000;
      return { variant: r.variant, past: s.past, stepMs: s.timing.medianMs, logitsOnlyMs: s.logitsOnly.medianMs, bytesRead, boundMs: round(boundMs, 3), ratio: round(s.timing.medianMs / boundMs, 2) };
    }));
    const bounds = boundsOf(runtime);

    let sherpa: SherpaLayoutBench | null = null;
    if (o.sherpa) {
      // One clip end to end: our runtime on each layout's int4 files, then sherpa-onnx-node (its
      // own onnxruntime, in a child process) on the sherpa-onnx int4 files, the same thread count.
      const threads = o.bandwidthThreads;
      const clipReps = Math.max(1, Math.min(o.reps, 3));
      o.log(`clip ${o.clip}: ${o.clipTokens} tokens, ${clipReps} timed recognitions each, ${threads} threads: our runtime (split, sherpa-onnx) and sherpa-onnx-node`);
      const runs = [
        await timeOurClip(() => AsrModel.load(model, { variant: 'int4', threads }), 'qwen3-onnx split int4', o.clip, o.clipTokens, clipReps),
        await timeOurClip(() => SherpaAsrModel.load(sherpaModel, { variant: 'int4', threads }), 'qwen3-onnx sherpa-onnx int4', o.clip, o.clipTokens, clipReps),
        await timeSherpaClip(sherpaModel, 'int4', o.clip, o.clipTokens, clipReps, threads),
      ];
      sherpa = {
        stages: sherpaStages, sizes: sherpaSizes, runtime: sherpaRuntime, bounds: boundsOf(sherpaRuntime),
        clip: { file: o.clip, maxNewTokens: o.clipTokens, threads, reps: clipReps, runs },
      };
      if (!o.keep) await rm(sherpaModel, { recursive: true, force: true });
    }

    let sweep: ThreadSweep | null = null;
    if (o.sweepThreads.length) {
      o.log(`thread sweep: int4 decoder_step at ${o.sweepPast} past, intra-op threads ${o.sweepThreads.join(', ')}`);
      sweep = await threadSweep({ modelDir: model, variant: 'int4', threads: o.sweepThreads, past: o.sweepPast, warmup: o.warmup, reps: o.reps });
    }
    if (!o.keep) await rm(model, { recursive: true, force: true });

    if (o.endToEnd) {
      // Synthetic weights make the int4-vs-fp32 gate meaningless, so it is opened fully: this
      // stage measures the time and memory of the one-shot build, not quality.
      await stage('build (end to end)', ['build', '--model', checkpoint, '--output', join(work, 'build'),
        '--variants', 'fp32,int4', '--attention', o.attention, '--min-top1', '0', '--min-cosine', '-1', '--quiet']);
      if (!o.keep) await rm(join(work, 'build'), { recursive: true, force: true });
    }

    return {
      format: 'qwen3-onnx-bench/1',
      startedAt,
      preset: o.preset,
      machine,
      loadAverage: { start: round(loadStart, 2), end: round(loadavg()[0], 2) },
      options: {
        preset: o.preset, checkpoint: o.checkpoint, warmup: o.warmup, reps: o.reps, loadReps: o.loadReps,
        audioSeconds: o.audioSeconds, pastLengths: o.pastLengths, sweepThreads: o.sweepThreads, sweepPast: o.sweepPast,
        bandwidthBytes: o.bandwidthBytes, bandwidthReps: o.bandwidthReps, bandwidthThreads: o.bandwidthThreads,
        endToEnd: o.endToEnd, rssMethod: o.rssMethod, attention: o.attention,
        sherpa: o.sherpa, clip: o.clip, clipTokens: o.clipTokens,
      },
      bandwidth,
      bandwidthAfterRuntime: bandwidthAfter,
      boundGBps: bestGBps,
      checkpoint: { path: checkpoint, generatedSeconds, bytes: checkpointBytes },
      stages,
      pipelineSeconds,
      sizes,
      runtime,
      bounds,
      threadSweep: sweep,
      sherpa,
      totalSeconds: round((performance.now() - started) / 1000, 1),
    };
  } finally {
    if (!o.keep) await rm(work, { recursive: true, force: true });
  }
}
