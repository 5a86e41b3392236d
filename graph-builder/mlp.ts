/** Qwen3 SwiGLU MLP: down_proj(silu(gate_proj(x)) * up_proj(x)). */
import type { GraphBuilder } from './graph-builder.js';
import { linear, silu } from './layers.js';

export interface SwiGluWeights { gate: string; up: string; down: string }

/**
 *   x ──gate_proj──Sigmoid─┐
 *   x ──gate_proj─────────Mul (silu)──┐
 *   x ──up_proj──────────────────────Mul──down_proj──▶ y
 */
export function swiGluMlp(b: GraphBuilder, x: string, w: SwiGluWeights): string {
  const gate = linear(b.scope('gate_proj'), x, w.gate);
  const up = linear(b.scope('up_proj'), x, w.up);
  const act = silu(b.scope('act_fn'), gate);
  const prod = b.op('Mul', [act, up]);
  return linear(b.scope('down_proj'), prod, w.down);
}
