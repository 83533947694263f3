import { Sha256, type Sha256State } from "../../crypto/sha256";
import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import type { BlobInfo, Chunk, UploadStatus } from "../registry";
import type { R2Blobs } from "./blobs";
import { ingest } from "./ingest";
import { RunningHash } from "./running-hash";
import { deleteData, readSegments, requestDataKey, segmentKey } from "./segments";
import { outOfOrder, SessionStore, type Lease, type Session, type SessionState } from "./sessions";
import { byteReader, withLength } from "../../streams";
import { parseDigest } from "../../oci/digest";
import { isWholeSmallBlob, receiveWhole } from "./whole-blob";

/**
 * Default part size for a body of unknown length (chunked transfer encoding), which must be
 * buffered because R2 wants a known length for every write: two parts at most are held, so an
 * upload holds at most 16 MiB. R2 takes parts of 5 MiB to 5 GiB, at most 10,000 of them.
 */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;

export { outOfOrder, type AnySessionState, type SessionState } from "./sessions";

/** A session taken by one request: as it read it, and its lease. */
interface Leased {
  session: Session;
  lease: Lease;
}

function status(state: SessionState): UploadStatus {
  return { id: state.id, name: state.name, offset: state.offset };
}

/** The answer for a chunk whose body broke off: what arrived is kept. */
function brokenOff(state: SessionState): RegistryError {
  return new RegistryError("BLOB_UPLOAD_INVALID", `the request body broke off; the upload holds ${state.offset} bytes, resume from there`, {
    headers: { Range: `0-${Math.max(0, state.offset - 1)}` },
  });
}

/** The 400 for an upload closed under a digest its bytes do not have. */
function wrongDigest(actual: string, expected: string): RegistryError {
  return new RegistryError("DIGEST_INVALID", `the uploaded content has digest ${actual}, not ${expected}`, { detail: { expected, actual } });
}

/**
 * The SHA-256 digest of a session's bytes as its state gives it without reading them: the blob a
 * whole first request stored, its saved hash state finished, or the digest a native hash left.
 * Undefined when only hashing the stored bytes again can tell.
 */
function savedDigest(state: SessionState): string | undefined {
  return state.blob ?? (state.hash ? `sha256:${Sha256.restore(state.hash).digestHex()}` : state.digest);
}

/** True when a chunk may carry bytes (a body not announced as empty). */
function hasBytes(chunk: Chunk): chunk is Chunk & { body: ReadableStream<Uint8Array> } {
  return chunk.body !== null && chunk.length !== 0;
}

/** What writing one chunk left: the next state (not yet committed) and whether the body broke off. */
interface Written {
  state: SessionState;
  interrupted?: unknown;
}

/**
 * Uploads in R2. Each request's body is streamed into the session's segments and hashed once on
 * the way (`ingest.ts`); the closing `PUT` checks the digest from the saved hash state and
 * publishes the segments as they are. Sessions are kept by {@link SessionStore} (`sessions.ts`),
 * which writes each key at most once a second.
 */
export class R2Uploads {
  private readonly sessions: SessionStore;

  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
    private readonly partSize = DEFAULT_PART_SIZE,
  ) {
    this.sessions = new SessionStore(bucket);
  }

  async start(name: string): Promise<UploadStatus> {
    return status(await this.sessions.open(name));
  }

  async status(name: string, id: string): Promise<UploadStatus> {
    return status((await this.sessions.load(name, id)).state);
  }

  async append(name: string, id: string, chunk: Chunk): Promise<UploadStatus> {
    // Both of its records at once: most PATCHes are an upload's first request.
    const session = await this.sessions.load(name, id, { both: true });
    const { state } = session;
    if (chunk.start !== undefined && chunk.start !== state.offset) {
      throw outOfOrder(state, `chunk starts at ${chunk.start} but the upload holds ${state.offset} bytes`);
    }
    if (isWholeSmallBlob(state.offset, chunk)) return status(await this.appendWhole(session, chunk.body, chunk.length));
    if (state.offset === 0) return status(await this.appendFirst(session, chunk));
    const { leased, written } = await this.leaseAndWrite(session, chunk);
    try {
      // A request that stored nothing leaves the session as it was.
      if (written.state.offset > leased.session.state.offset) await this.sessions.commit(leased.session, leased.lease, written.state);
    } finally {
      await this.sessions.release(leased.lease);
    }
    // A dropped connection keeps what arrived: the client resumes from the offset GET reports.
    if (written.interrupted !== undefined) throw brokenOff(written.state);
    return status(written.state);
  }

  /**
   * An upload's first bytes: written under a data key of their own, so no lease is needed (two
   * requests racing to start the same upload write apart; the one that records the session wins,
   * the other's bytes go).
   */
  private async appendFirst(session: Session, chunk: Chunk): Promise<SessionState> {
    const state: SessionState = { ...session.state, dataKey: requestDataKey(session.state.dataKey) };
    const written = await this.write(state, chunk);
    if (written.state.offset > 0) {
      try {
        await this.sessions.record(session, written.state);
      } catch (error) {
        // Lost to another request (or the session ended): these bytes are nobody's. After any
        // other failure the record may have landed, and they stay for the orphan sweep to judge.
        if (error instanceof RegistryError) await deleteData(this.bucket, state.dataKey).catch(() => undefined);
        throw error;
      }
    }
    if (written.interrupted !== undefined) throw brokenOff(written.state);
    return written.state;
  }

  async finish(name: string, id: string, digest: Digest, chunk: Chunk): Promise<BlobInfo> {
    if (!hasBytes(chunk)) {
      if (chunk.body) await chunk.body.cancel().catch(() => undefined);
      // The state key alone says where a session stands unless a request followed the one that
      // wrote it within 2 s: when its digest is the one named, the upload closes on it.
      let { state } = await this.sessions.load(name, id, { follow: false });
      if (digest.algorithm !== "sha256" || savedDigest(state) !== digest.value) state = (await this.sessions.load(name, id)).state;
      return this.close(name, digest, state);
    }
    // A last chunk in the PUT: the lease makes this request the only one writing the session.
    const session = await this.sessions.load(name, id);
    const { leased, written } = await this.leaseAndWrite(session, chunk);
    if (written.interrupted !== undefined) {
      try {
        if (written.state.offset > leased.session.state.offset) await this.sessions.commit(leased.session, leased.lease, written.state);
      } finally {
        await this.sessions.release(leased.lease);
      }
      throw brokenOff(written.state);
    }
    return this.close(name, digest, written.state);
  }

  /**
   * Closes an upload on `state`: checks the digest, publishes the bytes and ends the session,
   * whatever the outcome (on a wrong digest nothing is stored under it). Needs no lease: the
   * blob key is written only if absent, and bytes are kept whenever it refers to them, so a PUT
   * sent twice at once, or a PATCH meanwhile, loses nothing.
   */
  private async close(name: string, digest: Digest, state: SessionState): Promise<BlobInfo> {
    let published = false;
    try {
      if (state.blob !== undefined) return await this.finishWhole(name, digest, state.blob, state.offset);
      if (digest.algorithm === "sha256") {
        const computed = savedDigest(state) ?? `sha256:${Sha256.restore(await this.hashState(state)).digestHex()}`;
        if (computed !== digest.value) {
          throw wrongDigest(computed, digest.value);
        }
        const result = await this.blobs.publish(name, digest, { dataKey: state.dataKey, segments: state.segments, size: state.offset });
        published = result.kept;
        return result.info;
      }
      // Other algorithms: R2 verifies the bytes as they are written at the blob key.
      const copied = await this.blobs.copyIn(name, digest, { dataKey: state.dataKey, segments: state.segments, size: state.offset });
      // A copy given up for another push's may still be reading the bytes: the orphan sweep's.
      published = copied.raced === true;
      return { digest: copied.digest, size: copied.size };
    } finally {
      // Bytes a failed request may have left beyond the session's segments are the orphan sweep's.
      await this.sessions.end(state, published).catch(() => undefined);
    }
  }

  /**
   * Stores a small blob sent whole as the upload's first request straight at its blob key, once
   * its digest is known (a blob already there is kept), and records the session without a lease:
   * no other request of the session writes that key. A body that broke off leaves nothing.
   */
  private async appendWhole(session: Session, body: ReadableStream<Uint8Array>, length: number): Promise<SessionState> {
    const { state } = session;
    const received = await receiveWhole(body, length);
    try {
      if ("interrupted" in received) throw brokenOff(state);
      await this.blobs.put(state.name, parseDigest(received.digest)!, received.bytes, length, { ifAbsent: true, hashed: true });
    } finally {
      received.release();
    }
    const { hash: _, ...rest } = state;
    const next: SessionState = { ...rest, offset: length, segments: [], blob: received.digest, digest: received.digest };
    await this.sessions.record(session, next);
    return next;
  }

  /**
   * Ends an upload whose bytes went straight to their blob key with its first request: nothing to
   * copy when the digest is right. A wrong one is refused; the bytes stay under their own digest
   * (other pushes of the same blob may rely on them by now), where nothing references them and
   * the next garbage collection frees them.
   */
  private async finishWhole(name: string, digest: Digest, stored: string, size: number): Promise<BlobInfo> {
    if (digest.algorithm === "sha256" && digest.value !== stored) {
      throw wrongDigest(stored, digest.value);
    }
    // Nothing to write: as if this PUT came before anything that deleted the blob meanwhile.
    if (digest.algorithm === "sha256") return { digest: stored, size };
    const located = await this.blobs.locate(name, stored);
    if (!located) throw new RegistryError("BLOB_UPLOAD_INVALID", `blob ${stored} was deleted before this upload ended; upload it again`);
    // Another algorithm: its bytes are checked against it as they are copied to its blob key
    // (the sha256 blob is left to garbage collection, like one under a wrong digest).
    return this.blobs.copyIn(name, digest, { dataKey: located.dataKey, segments: [size], size });
  }

  /**
   * Moves a whole blob stored at its blob key into segments, for an upload that goes on after all
   * (rare: the clients that send a whole blob end the upload there). The segments go under a new
   * data key, which no request that lost a race for this session can still be writing.
   */
  private async unpublish(state: SessionState, stored: string): Promise<SessionState> {
    const content = await this.blobs.get(state.name, stored);
    if (!content) throw new RegistryError("BLOB_UPLOAD_INVALID", `blob ${stored} was deleted while this upload was open; upload it again`);
    const dataKey = requestDataKey(state.dataKey);
    await this.bucket.put(segmentKey(dataKey, 0), withLength(content.body, state.offset));
    const { blob: _, ...rest } = state;
    return { ...rest, dataKey, segments: [state.offset] };
  }

  /**
   * Ends a session (refused while a leased request writes to it). Its bytes are left to the sweep of
   * orphans, which deletes them once no pointer uses them: a session that published them just
   * before a crash kept it from ending must not lose them.
   */
  async cancel(name: string, id: string): Promise<void> {
    let session = await this.sessions.load(name, id);
    // Before any bytes are recorded, a first request may be streaming without a lease: the seal
    // keeps it from recording the session once it is ended.
    if (!session.head) {
      if (await this.sessions.seal(id)) return this.sessions.end(session.state, true, { sealed: true });
      session = await this.sessions.load(name, id);
    }
    await this.sessions.lease(session);
    await this.sessions.end(session.state, true);
  }

  /** Takes the session and streams the chunk into it; the lease is given back on failure. */
  private async leaseAndWrite(session: Session, chunk: Chunk): Promise<{ leased: Leased; written: Written }> {
    const { state } = session;
    if (chunk.start !== undefined && chunk.start !== state.offset) {
      throw outOfOrder(state, `chunk starts at ${chunk.start} but the upload holds ${state.offset} bytes`);
    }
    const leased: Leased = { session, lease: await this.sessions.lease(session) };
    try {
      return { leased, written: await this.write(state, chunk, () => this.sessions.renew(leased.session, leased.lease)) };
    } catch (error) {
      await this.sessions.release(leased.lease);
      throw error;
    }
  }

  /**
   * Streams a chunk into the session's segments, every byte through the running SHA-256. Returns
   * the next state (not yet committed); when the client's stream broke off, what arrived is kept
   * as far as it could be stored, and the error returned in `interrupted`.
   */
  private async write(from: SessionState, chunk: Chunk, onProgress?: () => Promise<void>): Promise<Written> {
    let state = from;
    if (!hasBytes(chunk)) {
      if (chunk.body) await chunk.body.cancel().catch(() => undefined);
      return { state };
    }
    if (state.blob !== undefined) state = await this.unpublish(state, state.blob);
    // The first request of an upload is hashed natively; later ones resume a saved state.
    const hasher = state.offset === 0 ? RunningHash.native() : RunningHash.resumable(await this.hashState(state));
    const done = await ingest({
      bucket: this.bucket,
      dataKey: state.dataKey,
      segments: state.segments,
      hasher,
      body: chunk.body,
      ...(chunk.length !== undefined ? { length: chunk.length } : {}),
      resumable: chunk.start !== undefined,
      partSize: this.partSize,
      ...(onProgress ? { onProgress } : {}),
    });
    const { hash: _, digest: __, ...rest } = state;
    const next: SessionState = {
      ...rest,
      segments: done.segments,
      offset: state.offset + done.stored,
      ...(done.hash ? { hash: done.hash } : {}),
      ...(done.digest ? { digest: done.digest } : {}),
    };
    return { state: next, ...(done.interrupted !== undefined ? { interrupted: done.interrupted } : {}) };
  }

  /**
   * The session's resumable SHA-256 state: saved, or rebuilt by hashing the stored segments again
   * (after a first request hashed natively, once another request follows it).
   */
  private async hashState(state: SessionState): Promise<Sha256State> {
    if (state.hash) return state.hash;
    const hasher = new Sha256();
    if (state.offset > 0) {
      const body = await readSegments(this.bucket, state.dataKey, state.segments, { start: 0, end: state.offset - 1 });
      if (!body) throw new Error(`upload ${state.id} lost its stored bytes`);
      const reader = byteReader(body);
      for (let piece = await reader.read(); piece; piece = await reader.read()) {
        hasher.update(piece);
        reader.recycle(piece);
      }
    }
    if (hasher.length !== state.offset) throw new Error(`upload ${state.id}: read back ${hasher.length} of ${state.offset} bytes`);
    return hasher.save();
  }
}
