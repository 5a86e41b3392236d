import { UserError } from '../common/errors.js';
import { HF_PREFIXES, originalNameOf } from './tensor-names.js';
import type { TensorInfo, TensorSource } from './tensor-source.js';

/**
 * An `-hf` checkpoint's tensors seen under their original (canonical) names, so that every
 * builder, check and graph initializer is the same whichever format was read (same model, same
 * bytes out). Reads go to the stored tensor; errors from the reader name the stored name.
 */
export class HfTensorSource implements TensorSource {
  private readonly storedByName = new Map<string, string>();
  private readonly sorted: TensorInfo[];

  /** Throws a one-line UserError naming the first stored tensor no rename covers. */
  constructor(private readonly inner: TensorSource, where: string) {
    const renamed: TensorInfo[] = [];
    for (const t of inner.list()) {
      const original = originalNameOf(t.name);
      if (original === undefined) {
        throw new UserError(
          `${where}: tensor ${t.name} has no known original name (an -hf checkpoint's tensors start with ${HF_PREFIXES.join(', ')})`);
      }
      this.storedByName.set(original, t.name);
      renamed.push({ ...t, name: original });
    }
    this.sorted = renamed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The name the checkpoint stores a canonical tensor under (the name itself when absent). */
  storedName(name: string): string {
    return this.storedByName.get(name) ?? name;
  }

  list(): TensorInfo[] {
    return this.sorted.map((t) => ({ ...t, shape: [...t.shape] }));
  }

  has(name: string): boolean {
    return this.storedByName.has(name);
  }

  info(name: string): TensorInfo {
    return { ...this.inner.info(this.storedName(name)), name };
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.inner.readFloat32(this.storedName(name));
  }

  readFloat32Rows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> {
    return this.inner.readFloat32Rows(this.storedName(name), rowStart, rowCount);
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.inner.readRaw(this.storedName(name));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
