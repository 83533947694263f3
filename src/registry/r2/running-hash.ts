import { Sha256, type Sha256State } from "../../crypto/sha256";

/**
 * The SHA-256 of an upload's bytes as they stream in, one of two ways:
 *
 * - `native`: workerd's `crypto.DigestStream` (about 3.5× the WebAssembly one), for a request that
 *   starts an upload, which is what docker, podman and skopeo send: the whole blob in one request.
 *   It cannot be saved, so it gives a digest when the request ends and no state to resume from.
 * - `resumable`: the WebAssembly {@link Sha256}, whose state is saved with the session after each
 *   stored segment, for uploads that span requests.
 *
 * @example
 * const hash = RunningHash.native();
 * await hash.update(piece);
 * await hash.finish(); // "sha256:…"
 */
export class RunningHash {
  private constructor(
    private readonly wasm: Sha256 | undefined,
    private readonly stream: { writer: WritableStreamDefaultWriter<Uint8Array>; digest: Promise<ArrayBuffer> } | undefined,
  ) {}

  static native(): RunningHash {
    const digest = new crypto.DigestStream("SHA-256");
    // An abandoned hash rejects its digest, which nobody awaits then.
    digest.digest.catch(() => undefined);
    return new RunningHash(undefined, { writer: digest.getWriter(), digest: digest.digest });
  }

  static resumable(state?: Sha256State): RunningHash {
    return new RunningHash(state ? Sha256.restore(state) : new Sha256(), undefined);
  }

  /** Adds bytes. */
  async update(piece: Uint8Array): Promise<void> {
    if (this.wasm) this.wasm.update(piece);
    else await this.stream!.writer.write(piece);
  }

  /** The state to resume from after the bytes so far; undefined for a native hash. */
  save(): Sha256State | undefined {
    return this.wasm?.save();
  }

  /** The digest of every byte added (a native hash); undefined for a resumable one, whose state is saved instead. */
  async finish(): Promise<string | undefined> {
    if (!this.stream) return undefined;
    await this.stream.writer.close();
    return `sha256:${hex(await this.stream.digest)}`;
  }

  /** Drops a native hash whose bytes are not all stored. */
  abandon(): void {
    this.stream?.writer.abort(new Error("the bytes were not all stored")).catch(() => undefined);
  }
}

function hex(buffer: ArrayBuffer): string {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}
