import type { Budget } from "../budget";
import type { CatalogIndex } from "../catalog-index";
import { DATA_METADATA, deleteKeys, keys } from "../keys";
import type { R2Links } from "../links";
import { baseDataKey, dataKeyOf } from "../segments";
import type { AnySessionState } from "../sessions";

/** What the sweep of assembled uploads found. */
export interface OrphanReport {
  /** `_data/` objects no pointer uses, deleted (or, in a dry run, that would be). */
  objects: number;
  bytes: number;
}

/**
 * Where a sweep of orphans stands. It works in windows of up to `WINDOW` `_data/` objects older
 * than the grace period (`list`); looks for what uses them (`mark`); lays a tombstone on the data
 * keys nothing uses (`bury`); looks again (`recheck`), since a mount may have pointed at them
 * before its tombstone was there; deletes what is still unused and lifts the tombstones (`delete`).
 */
export interface OrphanState {
  phase: "list" | "mark" | "bury" | "recheck" | "delete" | "done";
  /** The last `_data/` key listed, and whether the listing reached its end. */
  dataAfter?: string;
  listed?: boolean;
  /** The window: object keys and sizes. */
  candidates: [string, number][];
  /** While marking: which users are being looked at, from where. */
  source?: "repositories" | "links" | "sessions";
  after?: string;
  blobAfter?: string;
  /** Data keys of the window tombstoned so far, and when the first was. */
  buried?: number;
  buriedAt?: number;
}

/** `_data/` objects judged together. */
const WINDOW = 10_000;
/**
 * A window whose tombstones are older than this is tombstoned again before its recheck, so that
 * the sweep of leftovers (which lifts tombstones after two days) never lifts one it relies on.
 */
const BURIED_MAX_MS = 24 * 3600 * 1000;

/** A fresh sweep of orphans. */
export function orphanSweep(): OrphanState {
  return { phase: "list", candidates: [] };
}

export interface OrphanOptions {
  /** Objects written after this (ms since the epoch) are kept. */
  cutoff: number;
  dryRun: boolean;
}

function dataKeys(state: OrphanState): string[] {
  return [...new Set(state.candidates.map(([key]) => dataKeyOf(key)))];
}

/** Drops the candidates whose data key is in `used`. */
function spare(state: OrphanState, used: Set<string>): void {
  if (used.size > 0) state.candidates = state.candidates.filter(([key]) => !used.has(dataKeyOf(key)));
}

/**
 * Deletes uploads' bytes (`_data/<id>` and its segments) that no pointer or open session uses and
 * that are older than the grace period: bytes of uploads whose finish failed half-way, or lost a
 * race. It runs a step at a time until done or `budget` runs out (`state` says where it stands).
 * What uses bytes: the pointers of every catalogued repository, those the links index names (a
 * pointer published before its repository's first manifest), and open upload sessions. A
 * tombstone on each candidate, then a second look at every user, keeps a concurrent mount from
 * ending up on deleted bytes, however many invocations the second look takes.
 *
 * @example
 * const state = orphanSweep();
 * await sweepOrphans(budget, state, { index, links }, { cutoff: Date.now() - 3_600_000, dryRun: false }, report);
 */
export async function sweepOrphans(
  budget: Budget,
  state: OrphanState,
  parts: { index: CatalogIndex; links: R2Links },
  options: OrphanOptions,
  report: OrphanReport,
): Promise<void> {
  const bucket = budget.bucket;
  while (state.phase !== "done") {
    if (state.phase === "list") {
      if (!budget.allows(1)) return;
      const page = await bucket.list({ prefix: "_data/", limit: 1000, ...(state.dataAfter ? { startAfter: state.dataAfter } : {}) });
      for (const object of page.objects) {
        if (object.uploaded.getTime() <= options.cutoff) state.candidates.push([object.key, object.size]);
        state.dataAfter = object.key;
      }
      state.listed = !page.truncated;
      if (state.candidates.length >= WINDOW || state.listed) {
        if (state.candidates.length > 0) Object.assign(state, { phase: "mark", source: "repositories", after: undefined, blobAfter: undefined });
        else if (state.listed) state.phase = "done";
      }
    } else if (state.phase === "mark" || state.phase === "recheck") {
      if (state.phase === "recheck" && Date.now() - (state.buriedAt ?? 0) > BURIED_MAX_MS) {
        Object.assign(state, { phase: "bury", buried: 0, buriedAt: undefined });
        continue;
      }
      if (!(await markStep(budget, state, parts.index))) return;
      if (state.source !== undefined) continue;
      if (state.candidates.length === 0) nextWindow(state);
      else if (state.phase === "recheck") state.phase = "delete";
      else if (options.dryRun) {
        report.objects += state.candidates.length;
        report.bytes += state.candidates.reduce((sum, [, size]) => sum + size, 0);
        nextWindow(state);
      } else {
        Object.assign(state, { phase: "bury", buried: 0, buriedAt: undefined });
      }
    } else if (state.phase === "bury") {
      const buried = dataKeys(state);
      state.buriedAt ??= Date.now();
      while ((state.buried ?? 0) < buried.length) {
        if (!budget.allows(1)) return;
        await parts.links.bury(buried[state.buried ?? 0]!);
        state.buried = (state.buried ?? 0) + 1;
      }
      Object.assign(state, { phase: "recheck", source: "repositories", after: undefined, blobAfter: undefined });
    } else {
      const buried = dataKeys(state);
      if (!budget.allows(Math.ceil(state.candidates.length / 1000) + Math.ceil(buried.length / 1000))) return;
      await deleteKeys(
        bucket,
        state.candidates.map(([key]) => key),
      );
      report.objects += state.candidates.length;
      report.bytes += state.candidates.reduce((sum, [, size]) => sum + size, 0);
      await deleteKeys(bucket, buried.map(keys.tombstone));
      nextWindow(state);
    }
  }
}

function nextWindow(state: OrphanState): void {
  Object.assign(state, { phase: state.listed ? "done" : "list", candidates: [], source: undefined, after: undefined, blobAfter: undefined, buried: undefined, buriedAt: undefined });
}

/**
 * One step of looking for users of the window's data keys; the state's `source` moves on (to
 * undefined once all are seen). False when the budget allows no step.
 */
async function markStep(budget: Budget, state: OrphanState, index: CatalogIndex): Promise<boolean> {
  const bucket = budget.bucket;
  const wanted = new Set(dataKeys(state));
  const used = new Set<string>();
  if (wanted.size === 0) {
    state.source = undefined;
    return true;
  }
  /** The wanted request data keys (`requestDataKey`) by the session data key they were made from. */
  const bySession = new Map<string, string[]>();
  for (const key of wanted) {
    const base = baseDataKey(key);
    if (base !== key) bySession.set(base, [...(bySession.get(base) ?? []), key]);
  }
  if (state.source === "repositories") {
    // The pointers of catalogued repositories: a listing per 1,000 blob keys.
    if (!budget.allows(2)) return false;
    const { names, more } = await index.page(state.after, 20, bucket);
    for (const name of names) {
      const prefix = keys.blobsPrefix(name);
      // Where the last invocation stopped inside this repository (if it still is the next one).
      if (!state.blobAfter?.startsWith(prefix)) state.blobAfter = undefined;
      for (;;) {
        if (!budget.allows(1)) return true;
        const page = await bucket.list({ prefix, limit: 1000, include: ["customMetadata"], ...(state.blobAfter ? { startAfter: state.blobAfter } : {}) });
        for (const object of page.objects) {
          const data = object.customMetadata?.[DATA_METADATA];
          if (data && wanted.has(data)) used.add(data);
        }
        spare(state, used);
        state.blobAfter = page.objects[page.objects.length - 1]?.key ?? state.blobAfter;
        if (!page.truncated) break;
      }
      state.after = name;
      state.blobAfter = undefined;
    }
    if (!more) [state.source, state.after] = ["links", undefined];
    return true;
  }
  if (state.source === "links") {
    // Every indexed symlink or pointer, read: a repository outside the catalog may hold one.
    if (!budget.allows(3)) return false;
    const page = await bucket.list({ prefix: keys.linksRoot, limit: Math.min(1000, budget.left - 1), ...(state.after ? { startAfter: state.after } : {}) });
    for (const object of page.objects) {
      const rest = object.key.slice(keys.linksRoot.length);
      const slash = rest.indexOf("/");
      if (slash <= 0) continue;
      const data = (await bucket.head(keys.blob(rest.slice(slash + 1), rest.slice(0, slash))))?.customMetadata?.[DATA_METADATA];
      if (data && wanted.has(data)) used.add(data);
    }
    spare(state, used);
    state.after = page.objects[page.objects.length - 1]?.key ?? state.after;
    if (!page.truncated) [state.source, state.after] = ["sessions", undefined];
    return true;
  }
  // Open upload sessions: their segments are stored as they arrive.
  if (!budget.allows(3)) return false;
  const page = await bucket.list({ prefix: keys.uploadsPrefix, limit: Math.min(1000, budget.left - 1), ...(state.after ? { startAfter: state.after } : {}) });
  for (const object of page.objects) {
    // A session's state, or its `created` record before any bytes (its other keys name no data).
    const rest = object.key.slice(keys.uploadsPrefix.length);
    if (rest.includes("/") && !rest.endsWith("/created")) continue;
    const session = await bucket.get(object.key);
    try {
      const dataKey = session ? (JSON.parse(await session.text()) as AnySessionState).dataKey : undefined;
      if (dataKey && wanted.has(dataKey)) used.add(dataKey);
      // A request's own data key, made from the session's (see `requestDataKey`): the session's
      // while it is open, whether or not its state names it yet.
      for (const key of (dataKey && bySession.get(dataKey)) || []) used.add(key);
    } catch {
      // Not a session state: nothing it could use.
    }
  }
  spare(state, used);
  state.after = page.objects[page.objects.length - 1]?.key ?? state.after;
  if (!page.truncated) [state.source, state.after] = [undefined, undefined];
  return true;
}
