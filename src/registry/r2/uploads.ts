import { Sha256, type Sha256State } from "../../crypto/sha256";
import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import type { BlobInfo, Chunk, UploadStatus } from "../registry";
import type { R2Blobs } from "./blobs";
import { ingest } from "./ingest";
import { keys } from "./keys";
import { RunningHash } from "./running-hash";
import { readSegments, segmentKey } from "./segments";
import { byteReader } from "../../streams";

/**
 * Default part size for a body of unknown length (chunked transfer encoding), which must be
 * buffered because R2 wants a known length for every write: two parts at most are held, so an
 * upload holds at most 16 MiB. R2 takes parts of 5 MiB to 5 GiB, at most 10,000 of them.
 */
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
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
  version: 2;
  id: string;
  name: string;
  /** Bytes received: the sum of `segments`. */
  offset: number;
  /** Where the bytes go: `_data/<id>` and its segments (see `segments.ts`), published without a copy. */
  dataKey: string;
  /** Sizes of the segments stored so far. */
  segments: number[];
  /**
   * SHA-256 state of every byte received so far, resumable across requests. Absent after a
   * request that started the upload (hashed natively, see `running-hash.ts`): the next request
   * rebuilds it from the stored segments, and `digest` is the digest of those bytes.
   */
  hash?: Sha256State;
  /** The digest of every byte received, when the bytes were hashed natively. */
  digest?: string;
  createdAt: number;
  updatedAt: number;
  leaseUntil?: number;
}

/**
 * What sessions of earlier versions may hold, for the sweep of abandoned uploads: version 1 kept a
 * multipart upload (`multipartId` at `dataKey`) and pending bytes in `_uploads/<id>/tail-<n>`.
 */
export interface AnySessionState {
  version?: number;
  id?: string;
  dataKey?: string;
  multipartId?: string;
  updatedAt?: number;
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
 * Upload sessions in R2. Each request's body is streamed into the session's segments and hashed
 * once on the way (`ingest.ts`); the closing `PUT` checks the digest from the saved hash state and
 * publishes the segments as they are.
 */
export class R2Uploads {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
    private readonly partSize = DEFAULT_PART_SIZE,
  ) {}

  async start(name: string): Promise<UploadStatus> {
    const now = Date.now();
    const id = crypto.randomUUID();
    const state: SessionState = {
      version: 2,
      id,
      name,
      offset: 0,
      dataKey: keys.data(crypto.randomUUID()),
      segments: [],
      hash: new Sha256().save(),
      createdAt: now,
      updatedAt: now,
    };
    await this.bucket.put(keys.upload(id), JSON.stringify(state));
    return status(state);
  }

  async status(name: string, id: string): Promise<UploadStatus> {
    return status((await this.load(name, id)).state);
  }

  async append(name: string, id: string, chunk: Chunk): Promise<UploadStatus> {
    const { leased, written } = await this.leaseAndWrite(name, id, chunk);
    await this.commit(leased, written.state);
    // A dropped connection keeps what arrived: the client resumes from the offset GET reports.
    if (written.interrupted !== undefined) throw brokenOff(written.state);
    return status(written.state);
  }

  async finish(name: string, id: string, digest: Digest, chunk: Chunk): Promise<BlobInfo> {
    // The lease makes this request the only one finishing the session: a retried PUT or a DELETE
    // meanwhile is refused, so nothing deletes bytes this one publishes.
    const { leased, written } = await this.leaseAndWrite(name, id, chunk);
    if (written.interrupted !== undefined) {
      await this.commit(leased, written.state);
      throw brokenOff(written.state);
    }
    const state = written.state;
    let published = false;
    // Whatever the outcome, the session ends here: on a wrong digest nothing is stored under it.
    try {
      if (digest.algorithm === "sha256") {
        const computed = state.hash || state.digest === undefined ? `sha256:${Sha256.restore(await this.hashState(state)).digestHex()}` : state.digest;
        if (computed !== digest.value) {
          throw new RegistryError("DIGEST_INVALID", `the uploaded content has digest ${computed}, not ${digest.value}`, {
            detail: { expected: digest.value, actual: computed },
          });
        }
        // The repository has the blob already (another push of the same layer won, or this very
        // session published it before a crash kept it from ending): keep that one.
        const existing = await this.blobs.locate(name, digest.value);
        if (existing) {
          published = existing.dataKey === state.dataKey;
          return { digest: digest.value, size: state.offset };
        }
        const result = await this.blobs.publish(name, digest, { dataKey: state.dataKey, segments: state.segments, size: state.offset });
        published = result.kept;
        return result.info;
      }
      // Other algorithms: R2 verifies the bytes as they are written at the blob key.
      return await this.blobs.copyIn(name, digest, { dataKey: state.dataKey, segments: state.segments, size: state.offset });
    } finally {
      await this.discard(state, published).catch(() => undefined);
    }
  }

  /**
   * Ends a session (refused while a request writes to it). Its bytes are left to the sweep of
   * orphans, which deletes them once no pointer uses them: a session that published them just
   * before a crash kept it from ending must not lose them.
   */
  async cancel(name: string, id: string): Promise<void> {
    const { state } = await this.lease(name, id, { body: null });
    await this.bucket.delete(keys.upload(state.id));
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

  /**
   * Removes a session and the bytes it stored (unless they were published), in one call. Bytes a
   * failed request may have left beyond the session's segments are the orphan sweep's.
   */
  private async discard(state: SessionState, published = false): Promise<void> {
    const doomed = [keys.upload(state.id)];
    if (!published) doomed.push(...state.segments.map((_, i) => segmentKey(state.dataKey, i)));
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
    // A session belongs to the repository it was opened in. Sessions of an older version (before
    // an upgrade) are unknown: the client starts the blob again, and the sweep removes them.
    if (state.version !== 2 || state.name !== name) throw unknown(id);
    return { state, etag: object.etag };
  }

  /**
   * Takes a session for one request (a conditional write on its state), after checking that the
   * chunk starts where the session stands.
   */
  private async lease(name: string, id: string, chunk: Chunk): Promise<Leased> {
    const { state, etag } = await this.load(name, id);
    this.check(state, chunk);
    const leased: SessionState = { ...state, leaseUntil: Date.now() + LEASE_MS };
    const written = await this.bucket.put(keys.upload(id), JSON.stringify(leased), { onlyIf: { etagMatches: etag } });
    if (!written) throw outOfOrder(state, "another request is writing to this upload; resume from the offset in Range");
    return { state: leased, etag: written.etag };
  }

  /** The session, when no other request is writing to it and the chunk starts where it stands. */
  private check(state: SessionState, chunk: Chunk): SessionState {
    if (state.leaseUntil !== undefined && state.leaseUntil > Date.now()) {
      throw outOfOrder(state, "another request is writing to this upload; resume from the offset in Range");
    }
    if (chunk.start !== undefined && chunk.start !== state.offset) {
      throw outOfOrder(state, `chunk starts at ${chunk.start} but the upload holds ${state.offset} bytes`);
    }
    return state;
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
  }

  /**
   * Streams a chunk into the session's segments, every byte through the running SHA-256. Returns
   * the next state (not yet committed); when the client's stream broke off, what arrived is kept
   * as far as it could be stored, and the error returned in `interrupted`.
   */
  private async write(leased: Leased, chunk: Chunk): Promise<Written> {
    const state = leased.state;
    if (!hasBytes(chunk)) {
      if (chunk.body) await chunk.body.cancel().catch(() => undefined);
      return { state };
    }
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
      onProgress: async () => {
        if (Date.now() > (leased.state.leaseUntil ?? 0) - RENEW_MS) await this.renew(leased);
      },
    });
    const { hash: _, digest: __, ...rest } = leased.state;
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
      for (let piece = await reader.read(); piece; piece = await reader.read()) hasher.update(piece);
    }
    if (hasher.length !== state.offset) throw new Error(`upload ${state.id}: read back ${hasher.length} of ${state.offset} bytes`);
    return hasher.save();
  }
}
