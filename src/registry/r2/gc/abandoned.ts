import type { Budget } from "../budget";
import { deleteKeys, keys, lastSegment } from "../keys";
import { LEASE_MS, SessionStore, type AnySessionState } from "../sessions";

/** What a cleanup of abandoned uploads removed. */
export interface AbandonedReport {
  /** Upload sessions removed (their multipart uploads aborted). */
  sessions: number;
  /**
   * Temporary objects removed: pending tails, serverless-registry's upload records and helpers,
   * and what interrupted collections left (tombstones, progress records).
   */
  objects: number;
}

/**
 * Where a sweep of abandoned uploads stands: upload sessions (after key `after`), then the
 * bucket's top level (R2 listing `cursor`), then what interrupted collections left behind.
 */
export interface AbandonedState {
  phase: "sessions" | "root" | "tombstones" | "runs" | "collections" | "done";
  after?: string;
  cursor?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-helper)?$/;
const DAY = 24 * 3600 * 1000;
/**
 * Tombstones older than this were left by a deleter that died: a collection's step holds them
 * for one invocation, a sweep of orphans for at most a day (it lays them again after that).
 */
export const TOMBSTONE_TTL_MS = 2 * DAY;
/** Progress records of collections nobody continued for this long are dropped. */
export const STATE_TTL_MS = 7 * DAY;

/** Sweeps what interrupted collections left under one prefix: one page, one call plus a delete. */
const LEFTOVERS = {
  tombstones: { prefix: keys.tombstonesPrefix, ttl: TOMBSTONE_TTL_MS, next: "runs" },
  runs: { prefix: keys.runsPrefix, ttl: STATE_TTL_MS, next: "collections" },
  collections: { prefix: keys.collectionsPrefix, ttl: STATE_TTL_MS, next: "done" },
} as const;

export interface AbandonedOptions {
  /** Uploads untouched this long are abandoned. */
  maxAgeMs: number;
  dryRun: boolean;
  /** The progress record of the run doing the sweep, never removed. */
  keep?: string;
}

/**
 * Removes uploads nobody touched for `maxAgeMs`, a page at a time until done or `budget` runs out
 * (`state` says where it stands): this registry's sessions (aborting their R2 multipart uploads,
 * deleting pending tails), serverless-registry's `<uuid>` / `<uuid>-helper` objects at the bucket
 * root, and what interrupted collections left (tombstones older than two days, progress records
 * untouched for a week). Bytes an upload stored (`_data/`) are never touched here: once its
 * session is gone, the sweep of orphans judges them. (Serverless-registry's `<name>/uploads/`
 * records go with their repository's collection: `removeLegacyUploads`.)
 *
 * @example
 * const state: AbandonedState = { phase: "sessions" };
 * await removeAbandonedUploads(budget, state, { maxAgeMs: 86_400_000, dryRun: false }, report);
 */
export async function removeAbandonedUploads(budget: Budget, state: AbandonedState, options: AbandonedOptions, report: AbandonedReport): Promise<void> {
  const bucket = budget.bucket;
  while (state.phase !== "done") {
    if (state.phase === "sessions") {
      // A page of k keys costs at most 2k + 2 calls: per session a read and an abort (older
      // versions) or a listing of its keys, per other key two heads at most; a delete.
      if (!budget.allows(4)) return;
      await sessionsPage(bucket, state, options, Math.min(1000, Math.floor((budget.left - 2) / 2)), report);
    } else if (state.phase === "root") {
      if (!budget.allows(2)) return;
      let page: R2Objects;
      try {
        page = await bucket.list({ delimiter: "/", limit: 1000, ...(state.cursor ? { cursor: state.cursor } : {}) });
      } catch (error) {
        // A listing cursor saved by an earlier invocation may have expired: start this part again.
        if (state.cursor === undefined) throw error;
        delete state.cursor;
        continue;
      }
      const now = Date.now();
      const doomed = page.objects.filter((o) => UUID.test(lastSegment(o.key)) && now - o.uploaded.getTime() >= options.maxAgeMs).map((o) => o.key);
      report.objects += doomed.length;
      if (!options.dryRun) await deleteKeys(bucket, doomed);
      if (page.truncated) state.cursor = page.cursor;
      else [state.phase, state.cursor] = ["tombstones", undefined];
    } else {
      const leftover = LEFTOVERS[state.phase];
      if (options.dryRun) {
        state.phase = "done";
        continue;
      }
      if (!budget.allows(2)) return;
      const page = await bucket.list({ prefix: leftover.prefix, limit: 1000, ...(state.after ? { startAfter: state.after } : {}) });
      const now = Date.now();
      const doomed = page.objects
        .filter((o) => now - o.uploaded.getTime() > leftover.ttl && o.key !== options.keep)
        .map((o) => o.key);
      report.objects += doomed.length;
      await deleteKeys(bucket, doomed);
      state.after = page.objects[page.objects.length - 1]?.key ?? state.after;
      if (!page.truncated) [state.phase, state.after] = [leftover.next, undefined];
    }
  }
}

/**
 * One page of `_uploads/`: sessions past their age that no request holds are removed with every key
 * under `_uploads/<id>/` (their `created`, `after-` and `lease-` records, older versions' tails).
 * A session is its state key `_uploads/<id>`, or its `created` record before any bytes.
 */
async function sessionsPage(bucket: R2Bucket, state: AbandonedState, options: AbandonedOptions, limit: number, report: AbandonedReport): Promise<void> {
  const now = Date.now();
  const page = await bucket.list({ prefix: keys.uploadsPrefix, limit, ...(state.after ? { startAfter: state.after } : {}) });
  const doomed = new Set<string>();
  /** Sessions of this page: true when removed. */
  const removed = new Map<string, boolean>();
  for (const object of page.objects) {
    const rest = object.key.slice(keys.uploadsPrefix.length);
    const slash = rest.indexOf("/");
    const id = slash < 0 ? rest : rest.slice(0, slash);
    // The state key sorts before its `created` record: once judged, the record goes with it.
    const record = slash < 0 || (rest.slice(slash + 1) === "created" && !removed.has(id));
    if (record) {
      let session: AnySessionState = {};
      const body = await bucket.get(object.key);
      try {
        session = body ? (JSON.parse(await body.text()) as AnySessionState) : {};
      } catch {
        session = {};
      }
      const touched = Math.max(session.updatedAt ?? 0, object.uploaded.getTime());
      let abandoned = !((session.leaseUntil ?? 0) > now) && now - touched >= options.maxAgeMs;
      let others: string[] = [];
      if (abandoned && session.version === 3) {
        // Its other keys: touched since (a lease, an `after-` record), or held by a request (a
        // lease written within a lease's length may still hold).
        const keysOf = (await bucket.list({ prefix: `${keys.upload(id)}/`, limit: 1000 })).objects;
        const latest = Math.max(touched, ...keysOf.map((o) => o.uploaded.getTime()));
        const held = keysOf.some((o) => o.key.includes("/lease-") && now - o.uploaded.getTime() < LEASE_MS);
        abandoned = !held && now - latest >= options.maxAgeMs;
        others = keysOf.map((o) => o.key).filter((key) => key !== object.key);
      }
      // A session with no bytes recorded yet is sealed first (`SessionStore.seal`): a first
      // request still streaming, which takes no lease, then cannot record it once it is gone.
      if (abandoned && slash >= 0 && !options.dryRun) abandoned = await new SessionStore(bucket).seal(id);
      removed.set(id, abandoned);
      if (!abandoned) continue;
      report.sessions++;
      report.objects += others.length;
      if (options.dryRun) continue;
      if (session.multipartId && session.dataKey) {
        // Aborting a completed upload fails harmlessly; its bytes are the orphan sweep's to judge.
        await bucket
          .resumeMultipartUpload(session.dataKey, session.multipartId)
          .abort()
          .catch(() => undefined);
      }
      for (const key of [object.key, ...others]) doomed.add(key);
      continue;
    }
    if (doomed.has(object.key)) continue;
    // Another key `_uploads/<id>/…`: it goes with its session, or once old when its session is gone
    // (a session's keys sort before the others, so it was usually seen just before).
    let ofRemoved = removed.get(id);
    if (ofRemoved === undefined) {
      const [stateKey, created] = await Promise.all([bucket.head(keys.upload(id)), bucket.head(keys.uploadCreated(id))]);
      ofRemoved = stateKey === null && created === null ? undefined : false;
    }
    if (ofRemoved === true || (ofRemoved === undefined && now - object.uploaded.getTime() >= options.maxAgeMs)) {
      doomed.add(object.key);
      report.objects++;
    }
  }
  if (!options.dryRun) await deleteKeys(bucket, [...doomed]);
  state.after = page.objects[page.objects.length - 1]?.key ?? state.after;
  if (!page.truncated) [state.phase, state.after] = ["root", undefined];
}

/**
 * Removes serverless-registry's upload records of one repository (`<name>/uploads/`) older than
 * `maxAgeMs`: a listing and a delete per 1,000. Answers how many.
 *
 * @example
 * report.objects += await removeLegacyUploads(bucket, "team/app", 86_400_000, false);
 */
export async function removeLegacyUploads(bucket: R2Bucket, name: string, maxAgeMs: number, dryRun: boolean): Promise<number> {
  const now = Date.now();
  const doomed: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: `${name}/uploads/`, delimiter: "/", limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const object of page.objects) if (now - object.uploaded.getTime() >= maxAgeMs) doomed.push(object.key);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  if (!dryRun) await deleteKeys(bucket, doomed);
  return doomed.length;
}
