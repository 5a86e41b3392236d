import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchEntry, formatTables } from './bench-report.js';
import { repoRoot, runBench, type BenchResult } from './bench-run.js';
import { appendEntry, highestEntryNumber } from './investigation-log.js';
import { defaultRssMethod, runMeasured } from './measured-child.js';

// Keeps `npm run bench` from rotting: the whole harness on the tiny preset, one repetition.
// Needs the built CLI (npm test builds first). No timing assertions: only shapes and bookkeeping.
describe('bench harness on the tiny preset', () => {
  let work: string;
  let result: BenchResult;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bench-test-'));
    result = await runBench({
      preset: 'tiny', workRoot: work, warmup: 0, reps: 1, loadReps: 1, audioSeconds: 1, pastLengths: [8],
      sweepThreads: [1], sweepPast: 8, bandwidthBytes: 4 * 2 ** 20, bandwidthReps: 1, bandwidthThreads: 2,
      endToEnd: true, attention: 'fused', rssMethod: await defaultRssMethod(), keep: false, log: () => undefined,
      sherpa: true, clip: join(repoRoot(), '..', 'shared', 'audio', 'jfk.wav'), clipTokens: 3,
    });
  }, 300_000);
  afterAll(async () => { await rm(work, { recursive: true, force: true }); });

  it('measures every CLI stage as a child process and cleans up its work dir', async () => {
    expect(result.stages.map((s) => s.stage)).toEqual(['export', 'quantize', 'package fp32', 'package int4', 'build (end to end)']);
    // The export option reaches the export and build stages.
    expect(result.stages[0].command).toContain('--attention fused');
    expect(result.stages[4].command).toContain('--attention fused');
    for (const s of result.stages) {
      expect(s.wallSeconds).toBeGreaterThan(0);
      expect(s.peakRssMiB).toBeGreaterThan(20); // a node process is never smaller
    }
    expect(result.pipelineSeconds).toBeCloseTo(result.stages[0].wallSeconds + result.stages[1].wallSeconds + result.stages[3].wallSeconds, 1);
    expect(await readdir(work)).toEqual([]);
  });

  it('reports package sizes per variant (no Python reference for tiny)', () => {
    expect(result.sizes.map((s) => s.variant)).toEqual(['fp32', 'int4']);
    for (const s of result.sizes) {
      expect(s.archiveBytes).toBeGreaterThan(0);
      expect(s.unpackedBytes).toBeGreaterThan(0);
      expect(s.reference).toBeNull();
    }
  });

  it('times the produced models and the bandwidth bound with the tiny shapes', () => {
    expect(result.runtime.map((r) => r.variant)).toEqual(['fp32', 'int4']);
    for (const r of result.runtime) {
      expect(r.audioTokens).toBe(13); // 100 mel frames
      expect(r.steps.map((s) => s.past)).toEqual([8]);
      // 2 (K, V) x 3 layers x 2 kv heads x 8 past x 32 head_dim x 4 bytes
      expect(r.steps[0].kvBytes).toBe(2 * 3 * 2 * 8 * 32 * 4);
      expect(r.steps[0].weightBytes).toBeGreaterThan(0);
      expect(r.steps[0].logitsOnly.samplesMs).toHaveLength(1);
    }
    // int4 weights are smaller than fp32 ones
    expect(result.runtime[1].steps[0].weightBytes).toBeLessThan(result.runtime[0].steps[0].weightBytes);
    expect(result.bounds).toHaveLength(2);
    for (const b of result.bounds) expect(Number.isFinite(b.ratio) && b.ratio > 0).toBe(true);
    expect(result.threadSweep?.bestThreads).toBe(1);
    expect(result.bandwidth.bestGBps).toBeGreaterThan(0);
  });

  it('measures the sherpa-onnx layout beside the split one, and sherpa-onnx-node on the same clip', () => {
    const s = result.sherpa;
    expect(s).not.toBeNull();
    if (!s) return;
    expect(s.stages.map((x) => x.stage)).toEqual(['export sherpa-onnx', 'quantize sherpa-onnx', 'package sherpa-onnx fp32', 'package sherpa-onnx int4']);
    expect(s.stages[0].command).toContain('--layout sherpa-onnx');
    expect(s.sizes.map((x) => x.variant)).toEqual(['fp32', 'int4']);
    expect(s.runtime.map((x) => x.variant)).toEqual(['fp32', 'int4']);
    for (const [i, r] of s.runtime.entries()) {
      // Same audio, same prompt, same cache bytes as the split layout's figures.
      expect(r.audioTokens).toBe(result.runtime[i].audioTokens);
      expect(r.promptTokens).toBe(result.runtime[i].promptTokens);
      expect(r.steps.map((x) => x.kvBytes)).toEqual(result.runtime[i].steps.map((x) => x.kvBytes));
    }
    // A step reads the same weights in both layouts (the sherpa decoder's own token table: one row).
    expect(s.runtime[0].steps[0].weightBytes).toBe(result.runtime[0].steps[0].weightBytes);
    expect(s.runtime[1].steps[0].weightBytes / result.runtime[1].steps[0].weightBytes).toBeCloseTo(1, 2);
    expect(s.bounds).toHaveLength(2);
    expect(s.clip.runs.map((x) => x.runtime)).toEqual(['qwen3-onnx split int4', 'qwen3-onnx sherpa-onnx int4', 'sherpa-onnx-node int4']);
    for (const x of s.clip.runs) {
      expect(x.recognise.samplesMs).toHaveLength(1);
      expect(x.tokens).toBeGreaterThan(0);
      expect(x.tokens).toBeLessThanOrEqual(3);
    }
    const text = formatTables(result);
    expect(text).toContain('| sherpa-onnx int4 |');
    expect(text).toContain('| sherpa-onnx-node int4 |');
    expect(benchEntry(result, 'npm run bench', 'x.json').verdict).toContain('sherpa-onnx layout int4 step');
  });

  it('prints tables and an INVESTIGATION.md entry naming the figures', () => {
    const text = formatTables(result);
    expect(text).toContain('decoder_step ms @8');
    expect(text).toContain('| package int4 |');
    const entry = benchEntry(result, 'npm run bench -- --preset tiny', 'investigation/results/x.json');
    expect(entry.title).toContain('tiny');
    expect(entry.verdict).toContain('bandwidth bound');
    expect(entry.machine).toContain(result.machine.cpuModel);
  });
});

describe('investigation log', () => {
  it('appends with the number after the highest existing one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-log-'));
    try {
      const path = join(dir, 'INVESTIGATION.md');
      await writeFile(path, '# Log\n\n## 1. a\n\ntext\n\n## 7. b\n\nmore ## 9. not a heading\n');
      expect(highestEntryNumber(await readFile(path, 'utf8'))).toBe(7);
      const e = { title: 't', hypothesis: 'h', command: 'c', machine: 'm', result: 'r', verdict: 'v' };
      expect(await appendEntry(path, e)).toBe(8);
      expect(await appendEntry(path, e)).toBe(9);
      const text = await readFile(path, 'utf8');
      expect(text).toContain('more ## 9. not a heading\n\n## 8. t\n\n**Hypothesis.** h');
      expect(text.match(/^## 9\. t$/m)).not.toBeNull();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('peak RSS without /usr/bin/time', () => {
  it('reads process.resourceUsage().maxRSS reported by the child', async () => {
    const root = repoRoot();
    const m = await runMeasured(join(root, 'dist', 'cli', 'main.js'), ['--version'], {
      method: 'resource-usage', reporter: join(root, 'dist', 'investigation', 'rss-reporter.js'),
    });
    expect(m.rssMethod).toBe('resource-usage');
    expect(m.peakRssMiB).toBeGreaterThan(20);
    expect(m.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
