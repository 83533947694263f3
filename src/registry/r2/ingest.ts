import type { Sha256State } from "../../crypto/sha256";
import { RegistryError } from "../../errors";
import { byteReader, type ByteReader } from "../../streams";
import { HeldBytes, heldBytes } from "./held";
import type { RunningHash } from "./running-hash";
import { segmentKey } from "./segments";

/** The smallest segment a known-length body is cut into: what a dropped request loses at most early on. */
export const MIN_SEGMENT = 16 * 1024 * 1024;
/** The largest segment: one R2 `put` takes at most 4.995 GiB. */
export const MAX_SEGMENT = 4 * 1024 * 1024 * 1024;
/**
 * Most segments one upload may have: a `GET` reads each (a subrequest; 10,000 per invocation by
 * default on the Paid plan).
 */
export const MAX_SEGMENTS = 9_000;
/** R2's limit of parts in one multipart upload. */
const MAX_PARTS = 10_000;

/**
 * How long the next segment of a known-length body is, once `offset` bytes are stored: twice what
 * is stored (at least {@link MIN_SEGMENT}, at most {@link MAX_SEGMENT}). A request that breaks off
 * keeps every whole segment, and a blob of any size has few segments (a 1.1 GiB body: 5).
 */
export function segmentSizeAt(offset: number): number {
  return Math.min(MAX_SEGMENT, Math.max(MIN_SEGMENT, 2 * offset));
}

/**
 * The next segment of a body with `remaining` bytes to go.
 *
 * - A resumable chunk (one that says where it goes with `Content-Range`, as clients that resume
 *   send them): {@link segmentSizeAt}, or all of the rest when it is at most twice that (fewer
 *   segments, so fewer reads on every pull; what a request that breaks off loses stays within a
 *   segment).
 * - Any other body (a whole blob streamed in one `PATCH`, as skopeo sends it; its clients start
 *   the blob again when a request fails): one segment, so that a pull reads it in one request
 *   (4 GiB at most, one R2 `put`'s limit).
 *
 * @example
 * nextSegment(0, 30 << 20, true); // 30 MiB: one segment
 * nextSegment(0, 50 << 20, true); // 16 MiB, then 34 MiB
 * nextSegment(0, 50 << 20, false); // 50 MiB
 */
export function nextSegment(offset: number, remaining: number, resumable: boolean): number {
  if (!resumable) return Math.min(remaining, MAX_SEGMENT);
  const planned = segmentSizeAt(offset);
  return remaining <= 2 * planned && remaining <= MAX_SEGMENT ? remaining : Math.min(planned, remaining);
}

/** What to stream where. */
export interface IngestOptions {
  bucket: R2Bucket;
  /** The upload's data key; new segments go to `segmentKey(dataKey, segments.length)` and on. */
  dataKey: string;
  /** Sizes of the segments already stored. */
  segments: readonly number[];
  /** The running SHA-256 of every byte stored so far; it is fed this body's bytes. */
  hasher: RunningHash;
  body: ReadableStream<Uint8Array>;
  /** The body's length when the request said (Content-Length). */
  length?: number;
  /**
   * Whether a known-length body is a chunk a client resumes (it came with `Content-Range`): cut
   * into segments that a broken request keeps. Otherwise it is stored as one segment.
   */
  resumable: boolean;
  /** Part size for a body of unknown length (it is buffered: two parts at most). */
  partSize: number;
  /** Called as bytes flow (to keep a lease alive). */
  onProgress?: () => Promise<void>;
}

/** What a body left stored. */
export interface Ingested {
  /** Sizes of all segments, the new ones included. */
  segments: number[];
  /** Bytes of this body now stored. */
  stored: number;
  /** The SHA-256 state after the last stored byte (a resumable hasher). */
  hash?: Sha256State;
  /** The digest of every byte stored (a native hasher, when the whole body was stored). */
  digest?: string;
  /** Most bytes of this body held in memory at once. */
  peakHeld: number;
  /** Set when the client's body broke off: what had arrived is stored as far as it could be. */
  interrupted?: unknown;
}

/** Reads the next piece (at most `max` bytes where the stream allows), or reports that the client's stream broke. */
async function next(reader: ByteReader, max: number): Promise<{ value?: Uint8Array; done: boolean; error?: unknown }> {
  try {
    const value = await reader.read(max);
    return value ? { value, done: false } : { done: true };
  } catch (error) {
    return { done: true, error };
  }
}

/**
 * Streams a request body into R2 as new segments of an upload, hashing every byte once as it
 * passes (see `segments.ts` for the layout).
 *
 * - Known length: each segment is a `put` fed straight from the body, nothing buffered; when the
 *   body breaks off, the whole segments stay and the rest of this body is lost (a body that is not
 *   a resumable chunk is one segment, so nothing of it stays).
 * - Unknown length (chunked transfer encoding): R2 wants a known length for every write, so the
 *   body is cut into parts of `partSize` with at most two held at once (one filling, one being
 *   written), and becomes one segment: a multipart object, or one plain object when short. When it
 *   breaks off, everything that arrived is stored.
 *
 * @example
 * const done = await ingest({ bucket, dataKey, segments: [], hasher: RunningHash.native(), body, length, resumable: false, partSize: 8 << 20 });
 */
export async function ingest(options: IngestOptions): Promise<Ingested> {
  const gauge = new HeldBytes(heldBytes);
  const reader = byteReader(options.body);
  const written: string[] = [];
  try {
    const done = options.length !== undefined ? await ingestKnown(options, options.length, reader, gauge, written) : await ingestChunked(options, reader, gauge, written);
    return { ...done, peakHeld: gauge.peak };
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    // A body refused for what the client sent leaves nothing: the segments it wrote go (the
    // session never listed them). Not when the lease was lost: another request owns them now.
    if (error instanceof RegistryError && error.code !== "RANGE_INVALID" && written.length > 0) {
      await options.bucket.delete(written).catch(() => undefined);
    }
    throw error;
  } finally {
    gauge.release(gauge.current);
  }
}

function tooManySegments(): RegistryError {
  return new RegistryError("SIZE_INVALID", `an upload may have at most ${MAX_SEGMENTS} chunks; send larger chunks`);
}

type Done = Omit<Ingested, "peakHeld">;

async function ingestKnown(options: IngestOptions, length: number, reader: ByteReader, gauge: HeldBytes, written: string[]): Promise<Done> {
  const { bucket, dataKey, hasher } = options;
  const segments = [...options.segments];
  let stored = 0;
  let hash = hasher.save();
  let offset = segments.reduce((sum, size) => sum + size, 0);
  let pending: Uint8Array | undefined;
  let received = 0;
  while (stored < length) {
    if (segments.length >= MAX_SEGMENTS) throw tooManySegments();
    const size = nextSegment(offset, length - stored, options.resumable);
    const fixed = new FixedLengthStream(size);
    const writer = fixed.writable.getWriter();
    const key = segmentKey(dataKey, segments.length);
    const put = bucket.put(key, fixed.readable);
    put.catch(() => undefined);
    let sent = 0;
    let failure: { error: unknown; client: boolean } | undefined;
    // The piece handed to R2 last: the next one is read and hashed while it is written.
    let writing: { done: Promise<void>; piece: Uint8Array } | undefined;
    // Once R2 has taken a piece, its memory is read into again, unless `inUse` (or what is left
    // of a piece cut at a segment's end) still lies in it.
    const settle = async (inUse?: Uint8Array) => {
      if (!writing) return;
      const { done, piece } = writing;
      writing = undefined;
      try {
        await done;
      } finally {
        gauge.release(piece.byteLength);
      }
      if (piece.buffer !== inUse?.buffer && piece.buffer !== pending?.buffer) reader.recycle(piece);
    };
    while (sent < size) {
      let chunk = pending;
      pending = undefined;
      if (!chunk) {
        const read = await next(reader, size - sent);
        if (read.error !== undefined) {
          failure = { error: read.error, client: true };
          break;
        }
        if (read.done) {
          // A body that ends cleanly before the length it announced (Content-Length, or a
          // Content-Range of a chunked body) is the client's mistake: nothing of it is kept.
          failure = { error: new RegistryError("SIZE_INVALID", `received ${received} bytes but the request announced ${length}`), client: false };
          break;
        }
        chunk = read.value!;
        received += chunk.byteLength;
        if (received > length) {
          failure = { error: new RegistryError("SIZE_INVALID", `the chunk is longer than its Content-Length ${length}`), client: false };
          break;
        }
      }
      const take = Math.min(chunk.byteLength, size - sent);
      const piece = take === chunk.byteLength ? chunk : chunk.subarray(0, take);
      if (take < chunk.byteLength) pending = chunk.subarray(take);
      try {
        await hasher.update(piece);
        await settle(piece);
      } catch (error) {
        failure = { error, client: false };
        break;
      }
      gauge.hold(piece.byteLength);
      writing = { done: writer.write(piece), piece };
      writing.done.catch(() => undefined);
      sent += take;
      try {
        await options.onProgress?.();
      } catch (error) {
        failure = { error, client: false };
        break;
      }
    }
    try {
      await settle();
    } catch (error) {
      failure ??= { error, client: false };
    }
    if (failure) {
      await writer.abort(failure.error).catch(() => undefined);
      await put.catch(() => undefined);
      hasher.abandon();
      if (failure.client) return { segments, stored, ...(hash ? { hash } : {}), interrupted: failure.error };
      throw failure.error;
    }
    await writer.close();
    await put;
    written.push(key);
    segments.push(size);
    stored += size;
    offset += size;
    hash = hasher.save();
  }
  // A chunked body longer than its Content-Range says: refused, as one past its length would be.
  if ((pending && pending.byteLength > 0) || (await next(reader, 1)).value) {
    hasher.abandon();
    throw new RegistryError("SIZE_INVALID", `the chunk is longer than the ${length} bytes it announced`);
  }
  const digest = await hasher.finish();
  return { segments, stored, ...(hash ? { hash } : {}), ...(digest ? { digest } : {}) };
}

async function ingestChunked(options: IngestOptions, reader: ByteReader, gauge: HeldBytes, written: string[]): Promise<Done> {
  const { bucket, hasher, partSize } = options;
  const segments = [...options.segments];
  if (segments.length >= MAX_SEGMENTS) throw tooManySegments();
  const key = segmentKey(options.dataKey, segments.length);
  let upload: R2MultipartUpload | undefined;
  const parts: R2UploadedPart[] = [];
  let inflight: { part: Promise<R2UploadedPart>; buffer: Uint8Array } | undefined;
  let spare: Uint8Array | undefined;
  let buffer: Uint8Array | undefined;
  let filled = 0;
  let stored = 0;
  let interrupted: unknown;

  const settle = async () => {
    if (!inflight) return;
    const { part, buffer: written } = inflight;
    inflight = undefined;
    parts.push(await part);
    gauge.release(written.byteLength);
    spare = written;
  };
  try {
    for (;;) {
      const read = await next(reader, partSize - filled);
      if (read.error !== undefined) interrupted = read.error;
      if (read.done) break;
      const chunk = read.value!;
      await hasher.update(chunk);
      stored += chunk.byteLength;
      for (let at = 0; at < chunk.byteLength; ) {
        if (!buffer) {
          buffer = spare ?? new Uint8Array(partSize);
          spare = undefined;
        }
        const n = Math.min(partSize - filled, chunk.byteLength - at);
        buffer.set(chunk.subarray(at, at + n), filled);
        gauge.hold(n);
        filled += n;
        at += n;
        if (filled < partSize) continue;
        if (parts.length + 1 >= MAX_PARTS) throw new RegistryError("SIZE_INVALID", `a chunk of unknown length may be at most ${MAX_PARTS - 1} parts of ${partSize} bytes`);
        upload ??= await bucket.createMultipartUpload(key);
        await settle();
        inflight = { part: upload.uploadPart(parts.length + 1, buffer), buffer };
        inflight.part.catch(() => undefined);
        buffer = undefined;
        filled = 0;
      }
      await options.onProgress?.();
    }
    await settle();
    if (stored > 0) {
      const rest = buffer ? buffer.subarray(0, filled) : new Uint8Array(0);
      if (!upload) {
        await bucket.put(key, rest);
      } else {
        if (rest.byteLength > 0) parts.push(await upload.uploadPart(parts.length + 1, rest));
        await upload.complete(parts);
      }
      written.push(key);
      segments.push(stored);
    }
  } catch (error) {
    hasher.abandon();
    if (inflight) await inflight.part.catch(() => undefined);
    if (upload) await upload.abort().catch(() => undefined);
    throw error;
  }
  // Everything that arrived is stored, even when the body broke off: the hash covers it all.
  const hash = hasher.save();
  const digest = await hasher.finish();
  return { segments, stored, ...(hash ? { hash } : {}), ...(digest ? { digest } : {}), ...(interrupted !== undefined ? { interrupted } : {}) };
}
