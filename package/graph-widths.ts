import { join } from 'node:path';
import { UserError } from '../common/errors.js';
import { loadModel, toNumber, type LoadedModel } from '../common/onnx/index.js';

/**
 * The check that a model directory's graphs have the widths its config.json states (an input's or
 * output's last axis), for every kind of directory package and verify-package handle: the ASR
 * layouts (model-checks.ts) and the forced aligner (aligner-files.ts). Messages name the file as
 * the caller displays it (`display`, e.g. the archive's folder), not the temp directory.
 */

/** A graph input's or output's last-axis width that config.json fixes. */
export interface WidthRule<G extends string = string> { graph: G; kind: 'input' | 'output'; name: string; value: number; field: string }

export interface WidthTarget { dir: string; display: string }

/** The fixed width of a graph input's or output's last axis, or null when it is symbolic or absent. */
export function lastDim(model: LoadedModel, kind: 'input' | 'output', name: string): number | null {
  const values = kind === 'input' ? model.model.graph?.input : model.model.graph?.output;
  const dims = values?.find((x) => x.name === name)?.type?.tensorType?.shape?.dim;
  if (!dims || dims.length === 0) return null;
  const last = dims[dims.length - 1];
  return last.dimValue === null || last.dimValue === undefined ? null : toNumber(last.dimValue) || null;
}

/**
 * Loads each rule's graph once (its file from `fileFor`, relative to t.dir) and checks the width.
 * `requireFixed`: a symbolic or absent width is an error too (else only a fixed, different one).
 * Returns the loaded graphs by name for further checks.
 */
export async function checkGraphWidths<G extends string>(
  t: WidthTarget, rules: readonly WidthRule<G>[], fileFor: (graph: G) => Promise<string>, requireFixed: boolean,
): Promise<Map<G, { file: string; model: LoadedModel }>> {
  const loaded = new Map<G, { file: string; model: LoadedModel }>();
  for (const w of rules) {
    let g = loaded.get(w.graph);
    if (!g) {
      const file = await fileFor(w.graph).catch((err: unknown) => {
        throw err instanceof UserError ? new UserError(err.message.split(t.dir).join(t.display)) : err;
      });
      const model = await loadModel(join(t.dir, file)).catch((err: unknown) => {
        throw err instanceof UserError ? new UserError(err.message.split(join(t.dir, file)).join(`${t.display}/${file}`)) : err;
      });
      g = { file, model };
      loaded.set(w.graph, g);
    }
    const got = lastDim(g.model, w.kind, w.name);
    if (got === null ? requireFixed : got !== w.value) {
      throw new UserError(`${t.display}/${g.file}: ${w.kind} ${w.name} is ${got ?? 'absent or symbolic'} wide, but config.json ${w.field} is ${w.value}`);
    }
  }
  return loaded;
}
