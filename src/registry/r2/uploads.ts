import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import { ByteQueue } from "../../streams";
import type { BlobInfo, Chunk, UploadStatus } from "../registry";
import type { R2Blobs } from "./blobs";
import { keys } from "./keys";

/**
 * Size of every multipart part but the last. R2 wants all non-final parts of one size (5 MiB to
 * 5 GiB, at most 10,000 parts): received bytes are cut into parts of exactly this size whatever
 * chunks the client sends, and the remainder waits in a tail object for the next chunk.
 */
export const PART_SIZE = 10 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** How long one request may hold a session before another may take it over. */
const LEASE_MS = 10 * 60 * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An upload session as persisted at `_uploads/<id>`. */
interface SessionState {
  version: 1;
  id: string;
  name: string;
  /** Bytes received: `parts.length * partSize + tailSize`. */
  offset: number;
  partSize: number;
  parts: R2UploadedPart[];
  multipartId?: string;
  /** Serial of the tail object `_uploads/<id>/tail-<serial>`; 0 when there is none. */
  tailSerial: number;
  tailSize: number;
  createdAt: number;
  updatedAt: number;
  leaseUntil?: number;
}

interface Leased {
  state: SessionState;
  etag: string;
}

function status(state: SessionState): UploadStatus {
  return { id: state.id, name: state.name, offset: state.offset };
}

function unknown(id: string): RegistryError {
  return new RegistryError("BLOB_UPLOAD_UNKNOWN", `upload ${id.slice(0, 100)} is unknown or finished`);
}

/** The 416 answer for a chunk that does not start where the upload stands. */
export function outOfOrder(state: { offset: number }, message: string): RegistryError {
  return new RegistryError("RANGE_INVALID", message, {
    headers: { Range: `0-${Math.max(0, state.offset - 1)}` },
    detail: { offset: state.offset },
  });
}

/** Upload sessions in R2. */
export class R2Uploads {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
  ) {}

  async start(name: string): Promise<UploadStatus> {
    const now = Date.now();
    const state: SessionState = {
      version: 1,
      id: crypto.randomUUID(),
      name,
      offset: 0,
      partSize: PART_SIZE,
      parts: [],
      tailSerial: 0,
      tailSize: 0,
      createdAt: now,
      updatedAt: now,
    };
    await this.bucket.put(keys.upload(state.id), JSON.stringify(state));
    return status(state);
  }

  async status(name: string, id: string): Promise<UploadStatus> {
    return status((await this.load(name, id)).state);
  }

  async append(name: string, id: string, chunk: Chunk): Promise<UploadStatus> {
    const leased = await this.lease(name, id, chunk);
    let next: SessionState;
    try {
      ({ state: next } = await this.write(leased.state, chunk));
    } catch (error) {
      await this.release(leased);
      throw error;
    }
    await this.commit(leased, next);
    return status(next);
  }

  async finish(name: string, id: string, digest: Digest, chunk: Chunk): Promise<BlobInfo> {
    const leased = await this.lease(name, id, chunk);
    let state = leased.state;
    let tail: Uint8Array;
    try {
      ({ state, tail } = await this.write(state, chunk));
    } catch (error) {
      await this.release(leased);
      throw error;
    }
    // Whatever the outcome, the session ends here: on a wrong digest nothing is stored under it.
    try {
      if (state.parts.length === 0) {
        // Everything fits in one part: store it directly, verified by R2.
        return await this.blobs.put(name, digest, tail, tail.byteLength);
      }
      const upload = this.bucket.resumeMultipartUpload(keys.uploadData(id), state.multipartId!);
      const parts = [...state.parts];
      if (tail.byteLength > 0) parts.push(await upload.uploadPart(parts.length + 1, tail));
      const assembled = await upload.complete(parts);
      const object = await this.bucket.get(assembled.key);
      if (!object) throw new Error(`assembled upload ${assembled.key} vanished`);
      return await this.blobs.put(name, digest, object.body, object.size);
    } finally {
      await this.discard(state, leased.state).catch(() => undefined);
    }
  }

  async cancel(name: string, id: string): Promise<void> {
    const { state } = await this.load(name, id);
    await this.discard(state);
  }

  /** Removes a session and everything it stored. */
  private async discard(state: SessionState, previous?: SessionState): Promise<void> {
    if (state.multipartId) {
      await this.bucket
        .resumeMultipartUpload(keys.uploadData(state.id), state.multipartId)
        .abort()
        .catch(() => undefined);
    }
    const doomed = [keys.upload(state.id), keys.uploadData(state.id)];
    for (const s of [state, previous]) if (s && s.tailSerial > 0) doomed.push(keys.uploadTail(s.id, s.tailSerial));
    await this.bucket.delete(doomed);
  }

  private async load(name: string, id: string): Promise<Leased> {
    if (!UUID.test(id)) throw unknown(id);
    const object = await this.bucket.get(keys.upload(id));
    if (!object) throw unknown(id);
    let state: SessionState;
    try {
      state = JSON.parse(await object.text()) as SessionState;
    } catch {
      throw unknown(id);
    }
    // A session belongs to the repository it was opened in.
    if (state.version !== 1 || state.name !== name) throw unknown(id);
    return { state, etag: object.etag };
  }

  /**
   * Takes a session for one request (a conditional write on its state), after checking that the
   * chunk starts where the session stands.
   */
  private async lease(name: string, id: string, chunk: Chunk): Promise<Leased> {
    const { state, etag } = await this.load(name, id);
    const now = Date.now();
    if (state.leaseUntil !== undefined && state.leaseUntil > now) {
      throw outOfOrder(state, "another request is writing to this upload; resume from the offset in Range");
    }
    if (chunk.start !== undefined && chunk.start !== state.offset) {
      throw outOfOrder(state, `chunk starts at ${chunk.start} but the upload holds ${state.offset} bytes`);
    }
    const leased: SessionState = { ...state, leaseUntil: now + LEASE_MS };
    const written = await this.bucket.put(keys.upload(id), JSON.stringify(leased), { onlyIf: { etagMatches: etag } });
    if (!written) throw outOfOrder(state, "another request is writing to this upload; resume from the offset in Range");
    return { state: leased, etag: written.etag };
  }

  private async release(leased: Leased): Promise<void> {
    const { leaseUntil: _, ...state } = leased.state;
    await this.bucket
      .put(keys.upload(state.id), JSON.stringify(state), { onlyIf: { etagMatches: leased.etag } })
      .catch(() => undefined);
  }

  private async commit(leased: Leased, next: SessionState): Promise<void> {
    const { leaseUntil: _, ...state } = { ...next, updatedAt: Date.now() };
    const written = await this.bucket.put(keys.upload(state.id), JSON.stringify(state), {
      onlyIf: { etagMatches: leased.etag },
    });
    if (!written) throw outOfOrder(leased.state, "the upload changed while this chunk was written; resume from Range");
    if (leased.state.tailSerial > 0 && leased.state.tailSerial !== state.tailSerial) {
      await this.bucket.delete(keys.uploadTail(state.id, leased.state.tailSerial));
    }
  }

  /**
   * Streams a chunk into the session: whole parts go to the multipart upload, the remainder to a
   * new tail object. Returns the next state (not yet committed) and the tail bytes.
   */
  private async write(state: SessionState, chunk: Chunk): Promise<{ state: SessionState; tail: Uint8Array }> {
    const queue = new ByteQueue();
    if (state.tailSize > 0) {
      const tail = await this.bucket.get(keys.uploadTail(state.id, state.tailSerial));
      if (!tail || tail.size !== state.tailSize) throw new Error(`upload ${state.id} lost its pending bytes`);
      queue.push(new Uint8Array(await tail.arrayBuffer()));
    }
    const next: SessionState = { ...state, parts: [...state.parts] };
    let received = 0;
    if (chunk.body) {
      let upload: R2MultipartUpload | undefined;
      const reader = chunk.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          received += value.byteLength;
          if (chunk.length !== undefined && received > chunk.length) {
            throw new RegistryError("SIZE_INVALID", `the chunk is longer than its Content-Length ${chunk.length}`);
          }
          queue.push(value);
          while (queue.size >= next.partSize) {
            if (next.parts.length >= MAX_PARTS - 1) {
              throw new RegistryError("SIZE_INVALID", `blob too large: at most ${MAX_PARTS - 1} parts of ${next.partSize} bytes`);
            }
            if (!upload) {
              upload = next.multipartId
                ? this.bucket.resumeMultipartUpload(keys.uploadData(next.id), next.multipartId)
                : await this.bucket.createMultipartUpload(keys.uploadData(next.id));
              next.multipartId = upload.uploadId;
            }
            next.parts.push(await upload.uploadPart(next.parts.length + 1, queue.take(next.partSize)));
          }
        }
      } catch (error) {
        await reader.cancel().catch(() => undefined);
        throw error;
      }
    }
    if (chunk.length !== undefined && received !== chunk.length) {
      throw new RegistryError("SIZE_INVALID", `received ${received} bytes but Content-Length said ${chunk.length}`);
    }
    const tail = queue.drain();
    next.offset = state.offset + received;
    next.tailSize = tail.byteLength;
    next.tailSerial = 0;
    if (tail.byteLength > 0 && received > 0) {
      next.tailSerial = state.tailSerial + 1;
      await this.bucket.put(keys.uploadTail(next.id, next.tailSerial), tail);
    } else if (tail.byteLength > 0) {
      next.tailSerial = state.tailSerial;
    }
    return { state: next, tail };
  }
}
