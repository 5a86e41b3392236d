import { UserError } from '../common/errors.js';
import type { Progress } from '../common/progress.js';
import type { PackageManifest } from './manifest.js';
import { alignerAgreement, type Agreement } from '../runtime/aligner-compare.js';

/**
 * build's release gate for a forced-aligner directory (the ASR gate compares transcriptions,
 * runtime/compare.ts; the aligner's output is its timestamp classes): each quantised variant's
 * classes against fp32's at every `<timestamp>` position of the seeded inputs
 * (runtime/aligner-compare.ts), refused below `minAgreement` (build's --min-top1, the share of
 * positions with the fp32 class).
 */
export interface AlignerGateReport extends Agreement { variant: string; agreement: number; passed: boolean }

export async function gateAlignerVariants(
  modelDir: string, variants: readonly string[], minAgreement: number, progress: Progress,
): Promise<AlignerGateReport[]> {
  const reports: AlignerGateReport[] = [];
  for (const variant of variants) {
    progress.info(`compare fp32 vs ${variant} timestamp classes (forced aligner)`);
    const a = await alignerAgreement(modelDir, modelDir, variant);
    const agreement = a.same / Math.max(1, a.positions);
    const report = { ...a, variant, agreement, passed: agreement >= minAgreement };
    reports.push(report);
    if (!report.passed) {
      throw new UserError(`${variant} diverges from fp32 past the thresholds, not packaging it: timestamp classes agree at ${a.same}/${a.positions} positions (${(100 * agreement).toFixed(1)} % < --min-top1 ${minAgreement})`);
    }
  }
  return reports;
}

/**
 * Each quantised variant's recipe as its archive states it (config.json's `quantization`, which
 * the aligner's quantize wrote: quantize/aligner.ts), for build-record.json.
 */
export function packagedRecipes(manifests: readonly PackageManifest[]): Record<string, Record<string, string>> {
  const own = (m: PackageManifest): Record<string, string> => Object.fromEntries(Object.entries(m.recipe ?? {}).flatMap(([k, v]) => {
    // int4 keys are bare, other variants' end in .<variant> (quantize/aligner.ts).
    if (m.variant === 'int4') return k.includes('.') ? [] : [[k, v]];
    return k.endsWith(`.${m.variant}`) ? [[k.slice(0, -m.variant.length - 1), v]] : [];
  }));
  return Object.fromEntries(manifests.filter((m) => m.variant !== 'fp32').map((m) => [m.variant, own(m)]));
}
