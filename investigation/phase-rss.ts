/**
 * Where a command's memory goes, phase by phase: runs it as a child, samples the child's
 * /proc/<pid>/status every --interval ms (VmRSS, and its anonymous and file-backed parts), and
 * cuts phases at each line the child writes to stderr (build's progress.info lines: `export ...`,
 * `quantize int4`, `compare fp32 vs int4`, `package fp32`, ...). Prints one JSON object: the
 * peak of each figure per phase, and the child's own peak (VmHWM, last sample). (not a test)
 *
 *   node dist/investigation/phase-rss.js [--interval 200] -- node dist/cli/main.js build --model M --output O
 *
 * Linux only. Sampling can miss a spike shorter than the interval; the overall peak from
 * `/usr/bin/time -v` (wait4's maxrss) cannot, so bench entries quote both.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

interface PhasePeak { phase: string; startS: number; rssMiB: number; anonMiB: number; fileMiB: number }

const args = process.argv.slice(2);
let interval = 200;
const sep = args.indexOf('--');
if (sep < 0 || sep === args.length - 1) {
  process.stderr.write('usage: phase-rss [--interval MS] -- COMMAND [ARGS...]\n');
  process.exit(2);
}
const own = args.slice(0, sep);
if (own[0] === '--interval') interval = Number(own[1]);
const [cmd, ...cmdArgs] = args.slice(sep + 1);

// The child's stdout goes to stderr, so stdout carries only the report.
const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 2, 'pipe'] });
const started = performance.now();
const phases: PhasePeak[] = [{ phase: '(start)', startS: 0, rssMiB: 0, anonMiB: 0, fileMiB: 0 }];
let hwmMiB = 0;

let pending = '';
const childErr = child.stderr;
if (!childErr) throw new Error('no stderr pipe from the child');
childErr.setEncoding('utf8');
childErr.on('data', (chunk: string) => {
  process.stderr.write(chunk);
  pending += chunk;
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const text = line.replace(/\r?\x1b\[K/g, '').trim();
    // Live progress lines (`\r...%`) are not phase boundaries.
    if (text && !/\d+% \(/.test(text)) {
      phases.push({ phase: text.slice(0, 80), startS: (performance.now() - started) / 1000, rssMiB: 0, anonMiB: 0, fileMiB: 0 });
    }
  }
});

function field(status: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
  return m ? Number(m[1]) / 1024 : 0;
}

async function sample(): Promise<void> {
  let status: string;
  try { status = await readFile(`/proc/${child.pid}/status`, 'utf8'); } catch { return; }
  const cur = phases[phases.length - 1];
  cur.rssMiB = Math.max(cur.rssMiB, field(status, 'VmRSS'));
  cur.anonMiB = Math.max(cur.anonMiB, field(status, 'RssAnon'));
  cur.fileMiB = Math.max(cur.fileMiB, field(status, 'RssFile') + field(status, 'RssShmem'));
  hwmMiB = Math.max(hwmMiB, field(status, 'VmHWM'));
}

const timer = setInterval(() => { void sample(); }, interval);
child.on('exit', (code, signal) => {
  clearInterval(timer);
  const round = (p: PhasePeak): PhasePeak => ({
    ...p, startS: Math.round(p.startS * 10) / 10, rssMiB: Math.round(p.rssMiB), anonMiB: Math.round(p.anonMiB), fileMiB: Math.round(p.fileMiB),
  });
  process.stdout.write(`${JSON.stringify({
    command: [cmd, ...cmdArgs].join(' '), exit: code ?? signal, wallS: Math.round((performance.now() - started) / 100) / 10,
    hwmMiB: Math.round(hwmMiB), intervalMs: interval, phases: phases.map(round),
  }, null, 2)}\n`);
  process.exitCode = code ?? 1;
});
