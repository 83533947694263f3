import { Sha256, type Sha256State } from "../../crypto/sha256";
import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import { ByteQueue } from "../../streams";
import type { BlobInfo, Chunk, UploadStatus } from "../registry";
import type { R2Blobs } from "./blobs";
import { keys } from "./keys";

/**
 * Default size of every multipart part but the last. R2 wants all non-final parts of one size
 * (5 MiB to 5 GiB, at most 10,000 parts): received bytes are cut into parts of exactly this size
 * whatever chunks the client sends, and the remainder waits in a tail object for the next chunk.
 * 16 MiB parts allow blobs up to 156 GiB; two are written at once (memory: about three parts).
 */
export const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** Parts written to R2 at once while the next one is read (memory: this many parts). */
const PARALLEL_PARTS = 2;
/**
 * How long one request holds a session before another may take it over. A request writing a long
 * chunk renews it as it goes, so a request that died (a client that vanished, a Worker that was
 * stopped) blocks its session for at most this long.
 */
const LEASE_MS = 60 * 1000;
/** Renew the lease once less than this much of it is left. */
const RENEW_MS = 30 * 1000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An upload session as persisted at `_uploads/<id>`. */
export interface SessionState {
  version: 1;
  id: string;
  name: string;
  /** Bytes received: `parts.length * partSize + tailSize`. */
  offset: number;
  partSize: number;
  parts: R2UploadedPart[];
  multipartId?: string;
  /** Where the parts are assembled: `_data/<id>` (the published blob's bytes, never copied). */
  dataKey?: string;
  /** SHA-256 of every byte received so far, resumable across requests. */
  hash?: Sha256State;
  /** Serial of the tail object `_uploads/<id>/tail-<serial>`; 0 when there is none. */
  tailSerial: number;
  tailSize: number;
  createdAt: number;
  updatedAt: number;
  leaseUntil?: number;
}

/** A session taken by one request: its state and the etag of the state object (renewals move it). */
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

/** The answer for a chunk whose body broke off: what arrived is kept. */
function brokenOff(state: SessionState): RegistryError {
  return new RegistryError("BLOB_UPLOAD_INVALID", `the request body broke off; the upload holds ${state.offset} bytes, resume from there`, {
    headers: { Range: `0-${Math.max(0, state.offset - 1)}` },
  });
}

/** Upload sessions in R2. */
export class R2Uploads {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
    private readonly partSize = DEFAULT_PART_SIZE,
  ) {}

  async start(name: string): Promise<UploadStatus> {
    const now = Date.now();
    const state: SessionState = {
      version: 1,
      id: crypto.randomUUID(),
      name,
      offset: 0,
      partSize: this.partSize,
      parts: [],
      dataKey: keys.data(crypto.randomUUID()),
      hash: new Sha256().save(),
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
    const { leased, written } = await this.leaseAndWrite(name, id, chunk);
    await this.commit(leased, written.state);
    // A dropped connection keeps what arrived: the client resumes from the offset GET reports.
    if (written.interrupted) throw brokenOff(written.state);
    return status(written.state);
  }

  async finish(name: string, id: string, digest: Digest, chunk: Chunk): Promise<BlobInfo> {
    const { leased, written } = await this.leaseAndWrite(name, id, chunk);
    if (written.interrupted) {
      await this.commit(leased, written.state);
      throw brokenOff(written.state);
    }
    const { state, tail } = written;
    let published = false;
    // Whatever the outcome, the session ends here: on a wrong digest nothing is stored under it.
    try {
      const computed = state.hash ? `sha256:${Sha256.restore(state.hash).digestHex()}` : undefined;
      if (digest.algorithm === "sha256" && computed !== undefined && computed !== digest.value) {
        throw new RegistryError("DIGEST_INVALID", `the uploaded content has digest ${computed}, not ${digest.value}`, {
          detail: { expected: digest.value, actual: computed },
        });
      }
      // The repository has the blob already (another push of the same layer won): keep that one.
      if (computed === digest.value && (await this.blobs.locate(name, digest.value))) return { digest: digest.value, size: state.offset };
      if (state.parts.length === 0) {
        // Everything fits in one part: store it at the blob key, verified by R2 as well.
        return await this.blobs.put(name, digest, tail, tail.byteLength);
      }
      const dataKey = state.dataKey ?? keys.uploadData(id);
      const upload = this.bucket.resumeMultipartUpload(dataKey, state.multipartId!);
      const parts = [...state.parts];
      if (tail.byteLength > 0) parts.push(await upload.uploadPart(parts.length + 1, tail));
      const assembled = await upload.complete(parts);
      if (digest.algorithm === "sha256" && computed !== undefined && state.dataKey) {
        // Verified while it streamed in: publish the assembled bytes as they are, no copy.
        published = await this.blobs.share(name, digest.value, { dataKey, size: assembled.size });
        if (!published) {
          throw new RegistryError("BLOB_UPLOAD_INVALID", "a garbage collection removed this upload's bytes as it finished; upload the blob again");
        }
        return { digest: digest.value, size: assembled.size };
      }
      // Other algorithms (or sessions from before hashing): R2 verifies a copy.
      const object = await this.bucket.get(dataKey);
      if (!object) throw new Error(`assembled upload ${dataKey} vanished`);
      return await this.blobs.put(name, digest, object.body, object.size);
    } finally {
      await this.discard(state, leased.state, published).catch(() => undefined);
    }
  }

  async cancel(name: string, id: string): Promise<void> {
    const { state } = await this.load(name, id);
    await this.discard(state);
  }

  /** Takes the session and streams the chunk into it; the lease is given back on failure. */
  private async leaseAndWrite(name: string, id: string, chunk: Chunk): Promise<{ leased: Leased; written: Written }> {
    const leased = await this.lease(name, id, chunk);
    try {
      return { leased, written: await this.write(leased, chunk) };
    } catch (error) {
      await this.release(leased);
      throw error;
    }
  }

  /** Removes a session and everything it stored (but the assembled bytes once published). */
  private async discard(state: SessionState, previous?: SessionState, published = false): Promise<void> {
    const dataKey = state.dataKey ?? keys.uploadData(state.id);
    if (state.multipartId && !published) {
      await this.bucket
        .resumeMultipartUpload(dataKey, state.multipartId)
        .abort()
        .catch(() => undefined);
    }
    const doomed = [keys.upload(state.id)];
    if (!published) doomed.push(dataKey);
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

  /** Extends a lease this request holds (a conditional write, so a lost lease is noticed). */
  private async renew(leased: Leased): Promise<void> {
    const state: SessionState = { ...leased.state, leaseUntil: Date.now() + LEASE_MS };
    const written = await this.bucket.put(keys.upload(state.id), JSON.stringify(state), { onlyIf: { etagMatches: leased.etag } });
    if (!written) throw outOfOrder(leased.state, "the upload was taken over by another request; resume from the offset in Range");
    leased.state = state;
    leased.etag = written.etag;
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
   * new tail object, every byte through the running SHA-256. Returns the next state (not yet
   * committed) and the tail bytes; when the client's stream broke off, what arrived is kept and
   * the error returned in `interrupted`.
   */
  private async write(leased: Leased, chunk: Chunk): Promise<Written> {
    const state = leased.state;
    const queue = new ByteQueue();
    if (state.tailSize > 0) {
      const tail = await this.bucket.get(keys.uploadTail(state.id, state.tailSerial));
      if (!tail || tail.size !== state.tailSize) throw new Error(`upload ${state.id} lost its pending bytes`);
      queue.push(new Uint8Array(await tail.arrayBuffer()));
    }
    const next: SessionState = { ...state, parts: [...state.parts] };
    const hasher = state.hash ? Sha256.restore(state.hash) : undefined;
    let received = 0;
    let interrupted: unknown;
    const inflight: Promise<R2UploadedPart>[] = [];
    if (chunk.body) {
      let upload: R2MultipartUpload | undefined;
      const reader = chunk.body.getReader();
      try {
        for (;;) {
          let result: ReadableStreamReadResult<Uint8Array>;
          try {
            result = await reader.read();
          } catch (error) {
            interrupted = error;
            break;
          }
          if (result.done) break;
          const value = result.value;
          received += value.byteLength;
          if (chunk.length !== undefined && received > chunk.length) {
            throw new RegistryError("SIZE_INVALID", `the chunk is longer than its Content-Length ${chunk.length}`);
          }
          hasher?.update(value);
          queue.push(value);
          if (Date.now() > (leased.state.leaseUntil ?? 0) - RENEW_MS) await this.renew(leased);
          while (queue.size >= next.partSize) {
            if (next.parts.length + inflight.length >= MAX_PARTS - 1) {
              throw new RegistryError("SIZE_INVALID", `blob too large: at most ${MAX_PARTS - 1} parts of ${next.partSize} bytes`);
            }
            if (!upload) {
              const dataKey = next.dataKey ?? keys.uploadData(next.id);
              upload = next.multipartId
                ? this.bucket.resumeMultipartUpload(dataKey, next.multipartId)
                : await this.bucket.createMultipartUpload(dataKey);
              next.multipartId = upload.uploadId;
            }
            const index = next.parts.length + inflight.length;
            inflight.push(upload.uploadPart(index + 1, queue.take(next.partSize)));
            if (inflight.length >= PARALLEL_PARTS) next.parts.push(await inflight.shift()!);
          }
        }
        for (const part of inflight.splice(0)) next.parts.push(await part);
      } catch (error) {
        await Promise.allSettled(inflight);
        await reader.cancel().catch(() => undefined);
        throw error;
      }
    }
    if (!interrupted && chunk.length !== undefined && received !== chunk.length) {
      throw new RegistryError("SIZE_INVALID", `received ${received} bytes but Content-Length said ${chunk.length}`);
    }
    const tail = queue.drain();
    next.offset = state.offset + received;
    if (hasher) next.hash = hasher.save();
    next.tailSize = tail.byteLength;
    next.tailSerial = 0;
    if (tail.byteLength > 0 && received > 0) {
      next.tailSerial = state.tailSerial + 1;
      await this.bucket.put(keys.uploadTail(next.id, next.tailSerial), tail);
    } else if (tail.byteLength > 0) {
      next.tailSerial = state.tailSerial;
    }
    return { state: next, tail, interrupted };
  }
}

/** What {@link R2Uploads.write} produced. */
interface Written {
  state: SessionState;
  tail: Uint8Array;
  interrupted?: unknown;
}
