import { RegistryError } from "../../errors";
import { byteReader } from "../../streams";
import type { Chunk } from "../registry";
import { HeldBytes, heldBytes } from "./held";

/**
 * The largest blob stored straight at its blob key by the request that carries it whole: it is
 * held in memory until its last byte is in (its digest, so its key, is known only then), within
 * the budget of 16 MiB an upload may hold. Config blobs and most layers are smaller.
 */
export const WHOLE_BLOB_LIMIT = 16 * 1024 * 1024;

/**
 * True when a request's body is a whole small blob that may go straight to its blob key: the
 * first bytes of the upload, sent without `Content-Range` (skopeo and containerd send a blob this
 * way, one `PATCH` with a `Content-Length`; they start the blob again when a request fails), of
 * a known length of at most {@link WHOLE_BLOB_LIMIT}.
 *
 * @example
 * isWholeSmallBlob(0, { body, length: 4096 }); // true
 * isWholeSmallBlob(0, { body, length: 4096, start: 0 }); // false: a resumable chunk
 */
export function isWholeSmallBlob(offset: number, chunk: Chunk): chunk is Chunk & { body: ReadableStream<Uint8Array>; length: number } {
  return offset === 0 && chunk.start === undefined && chunk.body !== null && chunk.length !== undefined && chunk.length > 0 && chunk.length <= WHOLE_BLOB_LIMIT;
}

/** A whole body, read: its bytes and digest, or how it broke off. */
export type Received = { bytes: Uint8Array; digest: string } | { interrupted: unknown };

/**
 * Reads a body of `length` bytes into memory and hashes it natively (counted in
 * {@link heldBytes} while held: the caller calls `release()` once it is stored). A body shorter or
 * longer than it announced is the client's mistake (SIZE_INVALID); one whose stream broke off is
 * returned as `interrupted`, nothing kept.
 *
 * @example
 * const body = await receiveWhole(request.body, 4096);
 * if ("bytes" in body) await bucket.put(`team/app/blobs/${body.digest}`, body.bytes);
 */
export async function receiveWhole(stream: ReadableStream<Uint8Array>, length: number): Promise<Received & { release(): void }> {
  const gauge = new HeldBytes(heldBytes);
  const release = () => gauge.release(gauge.current);
  const bytes = new Uint8Array(length);
  gauge.hold(length);
  const reader = byteReader(stream);
  let filled = 0;
  try {
    for (;;) {
      let piece: Uint8Array | undefined;
      try {
        piece = await reader.read(length - filled + 1);
      } catch (interrupted) {
        release();
        return { interrupted, release };
      }
      if (!piece) break;
      if (filled + piece.byteLength > length) throw new RegistryError("SIZE_INVALID", `the chunk is longer than its Content-Length ${length}`);
      bytes.set(piece, filled);
      filled += piece.byteLength;
      reader.recycle(piece);
    }
    if (filled !== length) throw new RegistryError("SIZE_INVALID", `received ${filled} bytes but the request announced ${length}`);
    // One native call over the whole buffer: several times faster than feeding a DigestStream piece by piece.
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return { bytes, digest: `sha256:${Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")}`, release };
  } catch (error) {
    release();
    await reader.cancel().catch(() => undefined);
    throw error;
  }
}
