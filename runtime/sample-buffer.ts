/**
 * A Float32Array that grows as blocks are appended (doubling, so appends are amortised O(1)):
 * how the WAV reader and the audio loader collect samples whose count a stream may not declare.
 */
export class SampleBuffer {
  private data: Float32Array;
  private length = 0;

  constructor(capacity = 0) {
    this.data = new Float32Array(capacity);
  }

  append(block: Float32Array): void {
    if (this.length + block.length > this.data.length) {
      const grown = new Float32Array(Math.max(this.length + block.length, 2 * this.data.length));
      grown.set(this.data.subarray(0, this.length));
      this.data = grown;
    }
    this.data.set(block, this.length);
    this.length += block.length;
  }

  /** The samples appended so far (the buffer itself when it is exactly full, else a trimmed copy). */
  result(): Float32Array {
    return this.length === this.data.length ? this.data : this.data.slice(0, this.length);
  }
}
