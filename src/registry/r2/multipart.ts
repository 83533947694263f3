import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import { byteReader, type ByteReader } from "../../streams";

/**
 * R2's multipart bounds (https://developers.cloudflare.com/r2/objects/multipart-objects/): parts of
 * 5 MiB to 5 GiB, all but the last of one size, at most 10,000 of them; and one request, a part
 * included, carries at most 4.995 GiB (https://developers.cloudflare.com/r2/platform/limits/).
 */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_SIZE = 4.99 * 1024 * 1024 * 1024;
export const MAX_PARTS = 10_000;
/** R2's largest object: 5 TiB less 5 GiB (https://developers.cloudflare.com/r2/platform/limits/). */
export const MAX_OBJECT_SIZE = 5 * 1024 ** 4 - 5 * 1024 ** 3;

/**
 * Part size of a copy into a multipart object: its parts are streamed from the source, nothing
 * is buffered, so they may be large (a 5 GiB blob is 10 parts, 10 `uploadPart` calls).
 */
export const COPY_PART_SIZE = 512 * 1024 * 1024;

/**
 * The part size for a copy of `size` bytes: `preferred`, or larger when `size` needs more than
 * 10,000 parts of it (whole MiB). Throws `SIZE_INVALID` when R2 cannot hold an object that large.
 *
 * @example
 * copyPartSize(6 * 1024 ** 3); // 536870912: 12 parts of 512 MiB
 * copyPartSize(6 * 1024 ** 4); // 629 MiB parts, 10,000 at most
 */
export function copyPartSize(size: number, preferred = COPY_PART_SIZE): number {
  const MiB = 1024 * 1024;
  const needed = Math.ceil(Math.ceil(size / MAX_PARTS) / MiB) * MiB;
  if (size > MAX_OBJECT_SIZE) {
    throw new RegistryError("SIZE_INVALID", `a blob of ${size} bytes is larger than the ${MAX_OBJECT_SIZE} bytes of R2's largest object; push it with a sha256 digest`);
  }
  return Math.min(MAX_PART_SIZE, Math.max(MIN_PART_SIZE, preferred, needed));
}

/** What {@link putInParts} writes. */
export interface PartsOptions {
  /** Bytes per part (all but the last); see {@link copyPartSize}. */
  partSize: number;
  /** When set, the bytes are hashed as they pass and the object is only completed if they match. */
  verify?: Digest;
  httpMetadata?: R2HTTPMetadata;
}

const HASHES: Record<string, string> = { sha256: "SHA-256", sha512: "SHA-512" };

/** A native hash of the bytes streamed, when the digest's algorithm is one workerd has. */
function hasher(digest: Digest | undefined): { write(piece: Uint8Array): Promise<void>; hex(): Promise<string> } | undefined {
  const name = digest ? HASHES[digest.algorithm] : undefined;
  if (!name) return undefined;
  const stream = new crypto.DigestStream(name);
  const writer = stream.getWriter();
  stream.digest.catch(() => undefined);
  return {
    write: (piece) => writer.write(piece),
    hex: async () => {
      await writer.close();
      return Array.from(new Uint8Array(await stream.digest), (b) => b.toString(16).padStart(2, "0")).join("");
    },
  };
}

/** Streams exactly `length` bytes of `reader` into one part, read while the last piece is written. */
async function sendPart(
  upload: R2MultipartUpload,
  number: number,
  length: number,
  reader: ByteReader,
  carry: { rest?: Uint8Array },
  hash: ReturnType<typeof hasher>,
): Promise<R2UploadedPart> {
  const { readable, writable } = new FixedLengthStream(length);
  const writer = writable.getWriter();
  const part = upload.uploadPart(number, readable);
  part.catch(() => undefined);
  let writing: Promise<void> | undefined;
  try {
    for (let sent = 0; sent < length; ) {
      let piece = carry.rest ?? (await reader.read(length - sent));
      carry.rest = undefined;
      if (!piece) throw new Error(`the source ended ${length - sent} bytes short of part ${number}`);
      if (piece.byteLength > length - sent) {
        carry.rest = piece.slice(length - sent);
        piece = piece.subarray(0, length - sent);
      }
      await hash?.write(piece);
      await writing;
      writing = writer.write(piece);
      writing.catch(() => undefined);
      sent += piece.byteLength;
    }
    await writing;
    await writer.close();
  } catch (error) {
    await writer.abort(error).catch(() => undefined);
    await part.catch(() => undefined);
    throw error;
  }
  return part;
}

/**
 * Writes `size` bytes of `body` to `key` as an R2 multipart object, for objects one `put` cannot
 * take (over 4.995 GiB). Parts are of equal size (the last one shorter), each streamed from the
 * body as it arrives: one piece (1 MiB) is held, never a part. With `verify`, the bytes are hashed
 * on the way and the object is completed only when they match (else `DIGEST_INVALID`): until then
 * nothing is visible at `key`. Whatever fails, the multipart upload is aborted, leaving nothing.
 *
 * @example
 * await putInParts(bucket, "repo/blobs/sha512:…", body, size, { partSize: copyPartSize(size), verify: digest });
 */
export async function putInParts(bucket: R2Bucket, key: string, body: ReadableStream<Uint8Array>, size: number, options: PartsOptions): Promise<void> {
  const reader = byteReader(body);
  const hash = hasher(options.verify);
  let upload: R2MultipartUpload | undefined;
  try {
    upload = await bucket.createMultipartUpload(key, options.httpMetadata ? { httpMetadata: options.httpMetadata } : {});
    const parts: R2UploadedPart[] = [];
    const carry: { rest?: Uint8Array } = {};
    for (let offset = 0; offset < size; offset += options.partSize) {
      parts.push(await sendPart(upload, parts.length + 1, Math.min(options.partSize, size - offset), reader, carry, hash));
    }
    if (carry.rest || (await reader.read(1))) throw new Error(`the source is longer than ${size} bytes`);
    if (hash && options.verify) {
      const actual = `${options.verify.algorithm}:${await hash.hex()}`;
      if (actual !== options.verify.value) {
        throw new RegistryError("DIGEST_INVALID", `the uploaded content has digest ${actual}, not ${options.verify.value}`, {
          detail: { expected: options.verify.value, actual },
        });
      }
    }
    await upload.complete(parts);
  } catch (error) {
    await reader.cancel(error).catch(() => undefined);
    await upload?.abort().catch(() => undefined);
    throw error;
  }
}
