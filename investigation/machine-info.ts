import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import * as ort from 'onnxruntime-node';

/** The machine a benchmark ran on, as every INVESTIGATION.md entry names it. */
export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs the OS reports (os.cpus().length). */
  logicalCpus: number;
  /** SIMD extensions from /proc/cpuinfo that matter to ORT's kernels (avx2, avx512*, amx*). */
  simd: string[];
  ramGiB: number;
  node: string;
  onnxruntime: string;
  platform: string;
}

async function procCpuinfo(): Promise<string> {
  try { return await readFile('/proc/cpuinfo', 'utf8'); } catch { return ''; }
}

export async function machineInfo(): Promise<MachineInfo> {
  const info = await procCpuinfo();
  const model = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const flags = /^flags\s*:\s*(.+)$/m.exec(info)?.[1]?.split(/\s+/) ?? [];
  const simd = flags.filter((f) => /^(avx2|avx512(f|bw|vl|_vnni|_bf16)|amx_\w+|avx_vnni)$/.test(f)).sort();
  return {
    cpuModel: model,
    logicalCpus: cpus().length,
    simd,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    onnxruntime: ort.env.versions.common ?? 'unknown',
    platform: `${process.platform}-${process.arch}`,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.cpuModel} (${m.simd.join(' ') || 'no AVX2'}), ${m.logicalCpus} logical CPUs, ${m.ramGiB} GiB RAM, `
    + `${m.platform}, Node ${m.node}, onnxruntime-node ${m.onnxruntime}`;
}
