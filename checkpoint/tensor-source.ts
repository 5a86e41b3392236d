/**
 * The read side of a checkpoint: tensors found by name, read one at a time by offset.
 * Implemented by the safetensors reader (single file or sharded); consumers never see files.
 */
export type SafetensorsDtype =
  | 'BOOL' | 'U8' | 'I8' | 'U16' | 'I16' | 'F16' | 'BF16' | 'U32' | 'I32' | 'F32' | 'F64' | 'U64' | 'I64'
  | 'F8_E4M3' | 'F8_E5M2';

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute path of the .safetensors file holding it. */
  file: string;
  /** Absolute byte offset of the data inside `file` (header already accounted for). */
  offset: number;
  byteLength: number;
}

export interface TensorSource {
  /** Every tensor, sorted by name (deterministic iteration). */
  list(): TensorInfo[];
  has(name: string): boolean;
  /** Throws a UserError naming the tensor when absent. */
  info(name: string): TensorInfo;
  /** The tensor converted to float32 (BF16/F16/F32 sources). */
  readFloat32(name: string): Promise<Float32Array>;
  /**
   * Rows `rowStart .. rowStart+rowCount-1` of a tensor (first axis) converted to float32,
   * so a 151936-row embedding can be streamed without holding all of it.
   */
  readFloat32Rows(name: string, rowStart: number, rowCount: number): Promise<Float32Array>;
  /** The tensor's bytes exactly as stored. */
  readRaw(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}
