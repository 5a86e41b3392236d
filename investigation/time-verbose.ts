import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TimedRun { wallSeconds: number; userSeconds: number; systemSeconds: number; peakRssMiB: number; stdout: string }

/** Runs a command under GNU `/usr/bin/time -v` and parses its wall, CPU and peak-RSS report. */
export async function timeVerbose(args: string[]): Promise<TimedRun> {
  const { stdout, stderr } = await run('/usr/bin/time', ['-v', ...args], { maxBuffer: 64 * 1024 * 1024 });
  const field = (label: string): string => {
    const m = new RegExp(`${label}: (.+)`).exec(stderr);
    if (!m) throw new Error(`no "${label}" in /usr/bin/time output:\n${stderr}`);
    return m[1].trim();
  };
  const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)').split(':').map(Number);
  return {
    wallSeconds: wall.reduce((acc, v) => acc * 60 + v, 0),
    userSeconds: Number(field('User time \\(seconds\\)')),
    systemSeconds: Number(field('System time \\(seconds\\)')),
    peakRssMiB: Math.round(Number(field('Maximum resident set size \\(kbytes\\)')) / 1024),
    stdout,
  };
}
