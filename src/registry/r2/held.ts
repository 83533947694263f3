/**
 * Counts the bytes of blob data the Worker holds in memory (buffered parts, chunks being handed to
 * R2), now and at most, so tests and benchmarks can check the memory budget of uploads: an isolate
 * has 128 MB for every request it serves at once.
 *
 * @example
 * const gauge = new HeldBytes();
 * gauge.hold(8 << 20);
 * gauge.release(8 << 20);
 * gauge.peak; // 8388608
 */
export class HeldBytes {
  current = 0;
  peak = 0;

  constructor(private readonly parent?: HeldBytes) {}

  hold(n: number): void {
    this.current += n;
    if (this.current > this.peak) this.peak = this.current;
    this.parent?.hold(n);
  }

  release(n: number): void {
    this.current -= n;
    this.parent?.release(n);
  }

  /** Starts counting the peak afresh from what is held now. */
  reset(): void {
    this.peak = this.current;
  }
}

/** Everything the uploads of this isolate hold; each upload counts into it. */
export const heldBytes = new HeldBytes();
