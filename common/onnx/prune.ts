import { subgraphInputs } from './graph-index.js';
import type { Graph } from './proto.js';

/**
 * Small clean-up passes every rewrite ends with (after onnx/ir-py's unused-removal passes):
 * a generic dead-node pass, unused initializers, stale value_info. Each edits the graph in place
 * and says how much it removed.
 */

/** Values something reads: node inputs (subgraphs' free variables included) and graph outputs. */
function useCounts(graph: Graph): Map<string, number> {
  const uses = new Map<string, number>();
  const use = (name: string): void => { if (name) uses.set(name, (uses.get(name) ?? 0) + 1); };
  for (const n of graph.node) {
    for (const i of n.input) use(i);
    for (const i of subgraphInputs(n)) use(i);
  }
  for (const o of graph.output) use(o.name ?? '');
  return uses;
}

/**
 * Removes nodes of the default ONNX domain none of whose outputs is read (by a node or as a graph
 * output), walking backwards so a chain that only fed a dead node goes too. ONNX operators have
 * no side effects; nodes of other domains are kept, since this pass cannot know theirs.
 */
export function removeDeadNodes(graph: Graph): number {
  const uses = useCounts(graph);
  const dead = new Set<object>();
  for (let k = graph.node.length - 1; k >= 0; k--) {
    const n = graph.node[k];
    if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
    if (n.output.some((o) => o && (uses.get(o) ?? 0) > 0)) continue;
    dead.add(n);
    for (const i of [...n.input, ...subgraphInputs(n)]) if (i) uses.set(i, (uses.get(i) ?? 1) - 1);
  }
  if (dead.size > 0) graph.node = graph.node.filter((n) => !dead.has(n));
  return dead.size;
}

/**
 * Removes initializers nothing reads, with their listings among the graph inputs (old-style
 * models list initializers there too).
 */
export function removeUnusedInitializers(graph: Graph): number {
  const uses = useCounts(graph);
  const removed = new Set<string>();
  graph.initializer = graph.initializer.filter((t) => {
    const keep = t.name !== '' && (uses.get(t.name) ?? 0) > 0;
    if (!keep && t.name) removed.add(t.name);
    return keep;
  });
  if (removed.size > 0) graph.input = graph.input.filter((i) => !i.name || !removed.has(i.name));
  return removed.size;
}

/** Drops value_info entries for values no node produces any more. */
export function pruneValueInfo(graph: Graph): number {
  if (graph.valueInfo.length === 0) return 0;
  const produced = new Set<string>();
  for (const n of graph.node) for (const o of n.output) if (o) produced.add(o);
  const before = graph.valueInfo.length;
  graph.valueInfo = graph.valueInfo.filter((v) => v.name && produced.has(v.name));
  return before - graph.valueInfo.length;
}

/** All three: dead nodes, then the initializers and value_info they left behind. */
export function pruneGraph(graph: Graph): void {
  removeDeadNodes(graph);
  removeUnusedInitializers(graph);
  pruneValueInfo(graph);
}
