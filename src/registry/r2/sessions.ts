import { Sha256, type Sha256State } from "../../crypto/sha256";
import { RegistryError } from "../../errors";
import { deleteKeys, keys } from "./keys";
import { isTooManyWrites } from "./limited";
import { DELAYS_MS, jittered, unretried } from "./retrying";
import { segmentKey } from "./segments";

/**
 * How long one request holds a session before another may take it over. A request writing a long
 * chunk renews its lease as it goes, so a request that died (a client that vanished, a Worker that
 * was stopped) blocks its session for at most this long.
 */
export const LEASE_MS = 60 * 1000;
/** Renew a lease once less than this much of it is left (so a lease is written every 30 s at most). */
export const RENEW_MS = 30 * 1000;
/**
 * The session's state key `_uploads/<id>` is written again only this long after its last write:
 * R2 takes one write per key per second (https://developers.cloudflare.com/r2/platform/limits/),
 * and the Worker's clock is not R2's. Requests closer together record their state in write-once
 * `after-<offset>` keys instead.
 */
export const HEAD_REWRITE_MS = 2000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An upload session's state, as each of its records holds it. */
export interface SessionState {
  version: 3;
  id: string;
  name: string;
  /** Bytes received: the sum of `segments` (or the size of `blob`). */
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
  /**
   * Set when the bytes are not in `segments` but at the repository's blob key for this digest: a
   * small blob that came whole in the upload's first request went straight there
   * (`whole-blob.ts`), so the closing `PUT` copies nothing.
   */
  blob?: string;
  createdAt: number;
  updatedAt: number;
}

/**
 * What session records of any version may hold, for the sweeps: version 1 kept a multipart upload
 * (`multipartId` at `dataKey`) and pending bytes in `_uploads/<id>/tail-<n>`; version 2 kept its
 * lease in `leaseUntil`; version 3 keeps leases in `_uploads/<id>/lease-<offset>` (`until`).
 */
export interface AnySessionState {
  version?: number;
  id?: string;
  dataKey?: string;
  multipartId?: string;
  updatedAt?: number;
  leaseUntil?: number;
  until?: number;
  /** Set in the mark of a session ended before it recorded any bytes (`SessionStore.seal`). */
  ended?: number;
}

/** A session as a request read it: the state, and the state key as it was then (null when absent). */
export interface Session {
  state: SessionState;
  head: { etag: string; uploaded: number } | null;
}

/** A request's hold on writing a session from one offset. */
export interface Lease {
  key: string;
  etag: string;
  until: number;
  /** Records the request's commit made useless (`created`, once the state key exists), removed with the lease. */
  obsolete?: string[];
}

/** The 404 for a session that does not exist (or ended, or belongs to another repository). */
export function unknown(id: string): RegistryError {
  return new RegistryError("BLOB_UPLOAD_UNKNOWN", `upload ${id.slice(0, 100)} is unknown or finished`);
}

/** The 416 answer for a chunk that does not start where the upload stands. */
export function outOfOrder(state: { offset: number }, message: string): RegistryError {
  return new RegistryError("RANGE_INVALID", message, {
    headers: { Range: `0-${Math.max(0, state.offset - 1)}` },
    detail: { offset: state.offset },
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const BUSY = "another request is writing to this upload; resume from the offset in Range";

/** Where each segment of a state starts: the offsets requests may have started from. */
function boundaries(state: SessionState): number[] {
  const starts: number[] = [];
  let at = 0;
  for (const size of state.segments) {
    starts.push(at);
    at += size;
  }
  return starts;
}

/**
 * Upload sessions in R2, each key written at most once a second in every normal flow (R2 refuses
 * more, https://developers.cloudflare.com/r2/platform/limits/):
 *
 * - `POST` writes `_uploads/<id>/created` once: the session at offset 0.
 * - A request that writes bytes first takes the lease `_uploads/<id>/lease-<offset>`, created only
 *   if absent, so one request wins (an expired one is taken over on its etag; renewed every 30 s of
 *   a long chunk), then checks the session is still where it read it. A small whole blob, stored
 *   at its blob key rather than in the session's data, needs no lease (`record`).
 * - Its commit records the new state in `_uploads/<id>` (created if absent, else conditional on the
 *   etag it read, when that was written at least 2 s ago), or else in the write-once
 *   `_uploads/<id>/after-<offset>`; a read follows `after-` keys from `_uploads/<id>` on.
 * - The closing `PUT` (or a `DELETE`) removes the records, then the leases.
 *
 * @example
 * const store = new SessionStore(bucket);
 * const opened = await store.open("team/app");
 * const session = await store.load("team/app", opened.id);
 * const lease = await store.lease(session);
 */
export class SessionStore {
  /** The bucket without the retrying layer, for the lease (whose 429s this store handles). */
  private readonly direct: R2Bucket;

  constructor(private readonly bucket: R2Bucket) {
    this.direct = unretried(bucket);
  }

  /** Opens a session (the POST): one write-once record. */
  async open(name: string): Promise<SessionState> {
    const now = Date.now();
    const id = crypto.randomUUID();
    const state: SessionState = {
      version: 3,
      id,
      name,
      offset: 0,
      dataKey: keys.data(crypto.randomUUID()),
      segments: [],
      hash: new Sha256().save(),
      createdAt: now,
      updatedAt: now,
    };
    await this.bucket.put(keys.uploadCreated(id), JSON.stringify(state));
    return state;
  }

  /**
   * Reads where a session stands: its state key (or, before any bytes, its `created` record), then
   * the `after-` records of requests that followed too quickly to rewrite it (unless `follow` is
   * false: the state key alone). `both` reads the two records at once, one round trip fewer where
   * the state key is likely absent (a session's first request). Sessions of earlier versions, of
   * another repository, or ended, are unknown (the client starts the blob again).
   */
  async load(name: string, id: string, { both = false, follow = true } = {}): Promise<Session> {
    if (!UUID.test(id)) throw unknown(id);
    let object: R2ObjectBody | null;
    let created: R2ObjectBody | null = null;
    if (both) [object, created] = await Promise.all([this.bucket.get(keys.upload(id)), this.bucket.get(keys.uploadCreated(id))]);
    else object = await this.bucket.get(keys.upload(id));
    if (!object) {
      created ??= both ? null : await this.bucket.get(keys.uploadCreated(id));
      if (!created) throw unknown(id);
      return { state: this.parse(await created.text(), name, id), head: null };
    }
    await created?.body.cancel();
    let state = this.parse(await object.text(), name, id);
    const head = { etag: object.etag, uploaded: object.uploaded.getTime() };
    if (!follow) return { state, head };
    for (let after = await this.bucket.get(keys.uploadAfter(id, state.offset)); after; after = await this.bucket.get(keys.uploadAfter(id, state.offset))) {
      const next = this.parse(await after.text(), name, id);
      if (next.offset <= state.offset) throw new Error(`upload ${id}: record after ${state.offset} goes back to ${next.offset}`);
      state = next;
    }
    return { state, head };
  }

  private parse(text: string, name: string, id: string): SessionState {
    let state: SessionState;
    try {
      state = JSON.parse(text) as SessionState;
    } catch {
      throw unknown(id);
    }
    // A session belongs to the repository it was opened in.
    if (state?.version !== 3 || state.name !== name || state.id !== id) throw unknown(id);
    return state;
  }

  /**
   * Takes the lease to write the session from where it stands, and checks that no request moved
   * it meanwhile. Throws 416 (with the Range to resume from) when another request holds it or got
   * there first, 404 when the session ended. R2's 429 on the lease key (written within the last
   * second) is waited out while the session stays where it was (a request at the same offset that
   * ended without storing anything), and answered at once once it moved.
   */
  async lease(session: Session): Promise<Lease> {
    for (let tries = 0; ; tries++) {
      try {
        const lease = await this.take(session);
        if (await this.isCurrent(session)) return lease;
        await this.release(lease);
        throw await this.moved(session);
      } catch (error) {
        if (!isTooManyWrites(error)) throw error;
        if (!(await this.isCurrent(session))) throw await this.moved(session);
        if (tries >= DELAYS_MS.length) throw outOfOrder(session.state, BUSY);
        await sleep(jittered(DELAYS_MS[tries]!));
      }
    }
  }

  /** Creates the lease key, or takes over an expired one; 416 while another request holds it. */
  private async take({ state }: Session): Promise<Lease> {
    const key = keys.uploadLease(state.id, state.offset);
    const body = () => {
      const until = Date.now() + LEASE_MS;
      return { until, text: JSON.stringify({ until }) };
    };
    let next = body();
    let written = await this.direct.put(key, next.text, { onlyIf: { etagDoesNotMatch: "*" } });
    if (!written) {
      // Held by another request, or left by one that died: taken over once it expired.
      const current = await this.direct.get(key);
      let until = -Infinity;
      try {
        if (current) until = Number((JSON.parse(await current.text()) as { until?: unknown }).until);
      } catch {
        // Not a lease: taken over.
      }
      if (Number.isFinite(until) && until >= Date.now()) throw outOfOrder(state, BUSY);
      next = body();
      written = await this.direct.put(key, next.text, { onlyIf: current ? { etagMatches: current.etag } : { etagDoesNotMatch: "*" } });
      if (!written) throw outOfOrder(state, BUSY);
    }
    return { key, etag: written.etag, until: next.until };
  }

  /** The 416 (or 404) for a request that found the session moved on since it read it. */
  private async moved(session: Session): Promise<RegistryError> {
    const fresh = await this.load(session.state.name, session.state.id);
    return outOfOrder(fresh.state, `the upload moved on to ${fresh.state.offset} bytes; resume from the offset in Range`);
  }

  /** True when no request committed since `session` was read (its next record does not exist yet). */
  private async isCurrent({ state, head }: Session): Promise<boolean> {
    const [stateKey, other] = await Promise.all([
      this.bucket.head(keys.upload(state.id)),
      this.bucket.head(head ? keys.uploadAfter(state.id, state.offset) : keys.uploadCreated(state.id)),
    ]);
    if (!head) return stateKey === null && other !== null;
    return stateKey?.etag === head.etag && other === null;
  }

  /**
   * Extends a lease when less than {@link RENEW_MS} of it is left (a conditional write, so a lost
   * lease is noticed: the request must stop writing).
   */
  async renew(session: Session, lease: Lease): Promise<void> {
    if (Date.now() < lease.until - RENEW_MS) return;
    const until = Date.now() + LEASE_MS;
    const written = await this.bucket.put(lease.key, JSON.stringify({ until }), { onlyIf: { etagMatches: lease.etag } });
    if (!written) throw outOfOrder(session.state, "the upload was taken over by another request; resume from the offset in Range");
    lease.etag = written.etag;
    lease.until = until;
  }

  /** Gives a lease back (with the records its commit made useless, in the same call). */
  async release(lease: Lease): Promise<void> {
    await this.bucket.delete([lease.key, ...(lease.obsolete ?? [])]).catch(() => undefined);
  }

  /**
   * Records the state a request reached (it holds the lease from where `session` stood): in the
   * state key when that may be written again, else in the write-once `after-` record.
   */
  async commit(session: Session, lease: Lease, next: SessionState): Promise<void> {
    await this.renew(session, lease);
    await this.record(session, next);
    // The state key now holds all `created` did.
    if (!session.head) lease.obsolete = [keys.uploadCreated(session.state.id)];
  }

  /**
   * Records the state a request reached without a lease: for a request whose bytes went to a key
   * no other request of the session writes (a whole blob at its blob key). The write is
   * conditional on the session not having moved since `session` was read, so of two such requests
   * one records and the other gets 416.
   */
  async record(session: Session, next: SessionState): Promise<void> {
    const { state, head } = session;
    const text = JSON.stringify({ ...next, updatedAt: Date.now() });
    let written: R2Object | null;
    if (!head) written = await this.bucket.put(keys.upload(state.id), text, { onlyIf: { etagDoesNotMatch: "*" } });
    else if (Date.now() - head.uploaded >= HEAD_REWRITE_MS) written = await this.bucket.put(keys.upload(state.id), text, { onlyIf: { etagMatches: head.etag } });
    else written = await this.bucket.put(keys.uploadAfter(state.id, state.offset), text, { onlyIf: { etagDoesNotMatch: "*" } });
    if (!written) {
      throw await this.moved(session).catch((error: unknown) =>
        error instanceof RegistryError ? error : outOfOrder(state, "the upload changed while this chunk was written; resume from Range"),
      );
    }
  }

  /**
   * Marks a session that has recorded no bytes yet as ended, in its state key: a first request
   * still streaming (it takes no lease) then cannot record it afterwards, its conditional write
   * fails. False when a request recorded the session first. The mark stays until the sweep of
   * abandoned uploads removes it.
   */
  async seal(id: string): Promise<boolean> {
    return (await this.bucket.put(keys.upload(id), JSON.stringify({ ended: Date.now() }), { onlyIf: { etagDoesNotMatch: "*" } })) !== null;
  }

  /**
   * Ends a session: its records first (so no request can take it up again), with its segments
   * unless `keepBytes` (published, or left to the orphan sweep), then its leases. `after-` and
   * `lease-` keys can only be at offsets where a segment starts, or at the end. A session with no
   * segments (a whole blob stored at its blob key) has no bytes a late request could reach, and
   * ends in one call. `sealed`: the state key is the mark of {@link seal}, and stays.
   */
  async end(state: SessionState, keepBytes: boolean, { sealed = false } = {}): Promise<void> {
    const starts = boundaries(state);
    const records = [keys.uploadCreated(state.id), ...(sealed ? [] : [keys.upload(state.id)]), ...starts.filter((at) => at > 0).map((at) => keys.uploadAfter(state.id, at))];
    if (!keepBytes) records.push(...state.segments.map((_, i) => segmentKey(state.dataKey, i)));
    const leases = [...new Set([...starts, state.offset])].map((at) => keys.uploadLease(state.id, at));
    if (state.segments.length === 0) return deleteKeys(this.bucket, [...records, ...leases]);
    await deleteKeys(this.bucket, records);
    await deleteKeys(this.bucket, leases);
  }
}
