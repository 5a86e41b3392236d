/**
 * Compatibility names for modules not yet switched to the ONNX layer in common/onnx/ (the same
 * functions, re-exported): package/onnx-check.ts and some tests. New code imports
 * common/onnx/index.js.
 */
export {
  onnx as OnnxProto, DataType, AttrType, toNumber, dimsOf,
  type ModelProto, type GraphProto, type NodeProto, type TensorProto, type AttributeProto,
} from './onnx/proto.js';
export { isExternal, tensorBytes, readTensorBytesSync, type TensorBytes } from './onnx/tensor-data.js';
export { readRangeSync } from './onnx/byte-range.js';
export { checkExternalRanges, encodeModel, loadModel, type LoadedModel } from './onnx/model-file.js';
