/**
 * The ONNX layer: one place for the proto vocabulary (proto.ts), where tensor bytes are and how an
 * initializer points at external data (tensor-data.ts), reading byte ranges (byte-range.ts),
 * writing external-data files (data-file-writer.ts), loading and saving models (model-file.ts),
 * indexing a graph (graph-index.ts) and the clean-up passes (prune.ts).
 */
export * from './proto.js';
export * from './byte-range.js';
export * from './tensor-data.js';
export * from './data-file-writer.js';
export * from './model-file.js';
export * from './graph-index.js';
export * from './prune.js';
