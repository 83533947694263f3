import wasmModule from "./wasm/sha256.wasm";

/**
 * SHA-256 whose state can be saved and restored, so one digest can span several requests (the
 * chunks of an upload). WebCrypto's digests cannot be resumed; this one can. The compression
 * function runs in WebAssembly (`wasm/sha256.as.ts`, built into the checked-in `wasm/sha256.wasm`
 * by `pnpm build:wasm`); one instance per isolate serves every hasher, each of which keeps its own
 * state and lends it to the instance for the length of an {@link Sha256.update} call.
 *
 * @example
 * const h = new Sha256();
 * h.update(firstChunk);
 * const saved = h.save();            // JSON-safe, store it with the upload
 * const h2 = Sha256.restore(saved);
 * h2.update(secondChunk);
 * h2.digestHex();                    // same as hashing both chunks at once
 */
export class Sha256 {
  private readonly h = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  /** The bytes after the last whole block (fewer than 64). */
  private readonly block = new Uint8Array(64);
  private blockLength = 0;
  /** Total bytes hashed. */
  length = 0;

  /**
   * Adds bytes.
   *
   * @example
   * new Sha256().update(new TextEncoder().encode("abc")).digestHex(); // "ba7816bf…"
   */
  update(data: Uint8Array): this {
    const n = data.byteLength;
    this.length += n;
    let buffered = this.blockLength;
    if (buffered + n < 64) {
      this.block.set(data, buffered);
      this.blockLength = buffered + n;
      return this;
    }
    const { bytes, state, input, inputSize, compress } = engine();
    state.set(this.h);
    if (buffered > 0) bytes.set(this.block.subarray(0, buffered), input);
    let offset = 0;
    for (;;) {
      const take = Math.min(inputSize - buffered, n - offset);
      bytes.set(data.subarray(offset, offset + take), input + buffered);
      buffered += take;
      offset += take;
      if (offset === n) break;
      compress(inputSize >>> 6); // the input area is full: buffered === inputSize
      buffered = 0;
    }
    const whole = buffered & ~63;
    if (whole > 0) compress(whole >>> 6);
    this.blockLength = buffered - whole;
    this.block.set(bytes.subarray(input + whole, input + buffered));
    this.h.set(state);
    return this;
  }

  /**
   * The digest as lowercase hex (the hasher is not usable afterwards).
   *
   * @example
   * new Sha256().digestHex(); // "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
   */
  digestHex(): string {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.blockLength + 9 + 63) >> 6) * 64 - this.blockLength);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(pad.length - 4, bits >>> 0);
    const length = this.length;
    this.update(pad);
    this.length = length;
    let hex = "";
    for (const word of this.h) hex += (word >>> 0).toString(16).padStart(8, "0");
    return hex;
  }

  /**
   * The state as a JSON-safe object: the eight chaining words, the bytes after the last whole
   * block (base64) and the total length.
   *
   * @example
   * JSON.stringify(new Sha256().update(bytes).save()); // {"h":[…],"tail":"…","length":…}
   */
  save(): Sha256State {
    let tail = "";
    for (let i = 0; i < this.blockLength; i++) tail += String.fromCharCode(this.block[i]!);
    return { h: Array.from(this.h, (w) => w >>> 0), tail: btoa(tail), length: this.length };
  }

  /**
   * A hasher continuing from a saved state (from {@link Sha256.save}, of this or an earlier
   * implementation: the format has not changed).
   *
   * @example
   * const h = Sha256.restore(JSON.parse(stored));
   * h.update(nextChunk);
   */
  static restore(state: Sha256State): Sha256 {
    const hasher = new Sha256();
    hasher.h.set(state.h.map((w) => w | 0));
    const tail = atob(state.tail);
    for (let i = 0; i < tail.length; i++) hasher.block[i] = tail.charCodeAt(i);
    hasher.blockLength = tail.length;
    hasher.length = state.length;
    return hasher;
  }
}

/** A saved {@link Sha256} state. */
export interface Sha256State {
  h: number[];
  tail: string;
  length: number;
}

/** What `wasm/sha256.wasm` exports (see `wasm/sha256.as.ts`). */
interface Exports {
  memory: WebAssembly.Memory;
  STATE: WebAssembly.Global;
  INPUT: WebAssembly.Global;
  INPUT_SIZE: WebAssembly.Global;
  compress(blocks: number): void;
}

/** The isolate's WebAssembly instance, with views on its memory (which never grows). */
interface Engine {
  bytes: Uint8Array;
  /** The eight chaining words the next `compress` starts from and leaves its result in. */
  state: Int32Array;
  /** Offset of the input area in `bytes`. */
  input: number;
  /** Its size, a multiple of 64. */
  inputSize: number;
  /** Compresses that many blocks from the start of the input area. */
  compress(blocks: number): void;
}

let instance: Engine | undefined;

/**
 * The shared instance, made on first use (Workers cannot compile WebAssembly at run time, but can
 * instantiate the module the bundler compiled).
 *
 * @example
 * const { state, compress } = engine();
 */
function engine(): Engine {
  if (instance) return instance;
  const exports = new WebAssembly.Instance(wasmModule, {}).exports as unknown as Exports;
  const buffer = exports.memory.buffer;
  instance = {
    bytes: new Uint8Array(buffer),
    state: new Int32Array(buffer, exports.STATE.value as number, 8),
    input: exports.INPUT.value as number,
    inputSize: exports.INPUT_SIZE.value as number,
    compress: exports.compress,
  };
  return instance;
}
