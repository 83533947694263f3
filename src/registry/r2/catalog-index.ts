import { MAX_NAME_LENGTH } from "../../oci/names";
import { Budget, type Limits } from "./budget";
import { keys } from "./keys";
import { loadJson, saveJson, type Stored } from "./progress";

/** Sub-folders of a repository in the original's layout (never nested repositories' roots here). */
const INTERNAL_FOLDERS = new Set(["manifests/", "blobs/", "uploads/", "_referrers/", "insertion/", "gc/"]);
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

/**
 * What a request may spend on a backfill it triggers (a catalog listing, a blob delete): half of
 * a collection's calls and at most 10 s, so it still answers in time; cron runs and collections
 * carry on with their own budgets.
 */
export function requestSlice(limits: Limits): Limits {
  return { operations: Math.floor(limits.operations / 2), ms: Math.min(limits.ms, 10_000) };
}

/** Progress of the catalog backfill: folders still to look into, in lexical order. */
interface Progress {
  v: 1;
  frontier: string[];
}

/** Where the catalog backfill stands: done, or every repository name below `watermark` indexed. */
export interface IndexState {
  done: boolean;
  /** While not done: every repository whose name sorts before this one is indexed. */
  watermark?: string;
}

/** Inserts `name` into a sorted array, keeping it sorted and free of duplicates. */
function insertSorted(list: string[], name: string): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! < name) lo = mid + 1;
    else hi = mid;
  }
  if (list[lo] !== name) list.splice(lo, 0, name);
}

/** Every delimited prefix under `prefix`, page by page (one call each). */
async function folders(bucket: R2Bucket, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, delimiter: "/", limit: 1000, ...(cursor ? { cursor } : {}) });
    found.push(...page.delimitedPrefixes);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return found;
}

/**
 * The catalog index (`_repositories/<name>` markers) and its one-time backfill for buckets written
 * before it existed (by serverless-registry). The backfill walks folder names (listings with a
 * "/" delimiter), always the smallest folder name first, so that at any point every repository
 * whose name sorts before the smallest unexplored folder is indexed: a catalog request can answer
 * that part exactly while the rest is still being walked. It runs a bounded slice per call and
 * keeps its progress at `_meta/catalog-backfill` until `_meta/catalog-backfilled` is written.
 *
 * @example
 * const state = await index.ensure(); // { done: false, watermark: "team" } on a big old bucket
 * const { names } = await index.page(undefined, 100);
 */
export class CatalogIndex {
  private done = false;

  constructor(
    private readonly bucket: R2Bucket,
    /** What a request that triggers the backfill may spend on it (see `requestSlice`). */
    private readonly limits: Limits,
  ) {}

  /**
   * Runs a slice of the backfill if it is not complete; `budget` bounds it (else a request's
   * slice). Never throws: a slice that fails keeps its progress unsaved and is retried later.
   */
  async ensure(budget?: Budget): Promise<IndexState> {
    if (this.done) return { done: true };
    const work = budget ?? Budget.start(this.bucket, this.limits);
    const bucket = work.bucket;
    if (!work.allows(1)) return { done: false };
    if (await bucket.head(keys.catalogBackfilled)) {
      this.done = true;
      return { done: true };
    }
    let stored: Stored<Progress> | undefined;
    try {
      stored = await loadJson<Progress>(bucket, keys.catalogProgress);
      const frontier = stored?.value.frontier ?? (await this.topLevel(bucket));
      while (frontier.length > 0 && work.allows(3)) {
        const folder = frontier[0]!;
        const prefix = `${folder}/`;
        const children = await folders(bucket, prefix);
        if (children.includes(`${prefix}manifests/`) && folder.length <= MAX_NAME_LENGTH && NAME.test(folder)) {
          // Only where there is none: a marker written meanwhile (maybe cached-only) stays as it is.
          // Head first: a refused conditional write is still a write (R2 takes one a second per key).
          if (!(await bucket.head(keys.repository(folder)))) await bucket.put(keys.repository(folder), "", { onlyIf: { etagDoesNotMatch: "*" } });
        }
        frontier.shift();
        for (const child of children) if (!INTERNAL_FOLDERS.has(child.slice(prefix.length))) insertSorted(frontier, child.slice(0, -1));
      }
      if (frontier.length === 0) {
        await bucket.put(keys.catalogBackfilled, new Date().toISOString());
        await bucket.delete(keys.catalogProgress);
        this.done = true;
        return { done: true };
      }
      await saveJson(bucket, keys.catalogProgress, { v: 1, frontier } satisfies Progress, stored?.etag);
      return { done: false, watermark: frontier[0]! };
    } catch (error) {
      console.error("r2-registry: a slice of the catalog backfill failed (it resumes later):", error);
      const frontier = stored?.value.frontier;
      return frontier && frontier.length > 0 ? { done: false, watermark: frontier[0]! } : { done: false };
    }
  }

  /** The folders at the top of the bucket (repository names' first parts), sorted. */
  private async topLevel(bucket: R2Bucket): Promise<string[]> {
    const frontier: string[] = [];
    for (const prefix of await folders(bucket, "")) if (!prefix.startsWith("_")) insertSorted(frontier, prefix.slice(0, -1));
    return frontier;
  }

  /**
   * Up to `limit` indexed names after `after`, in lexical order (one call per 1,000), through
   * `bucket` (a budget's) or the index's own.
   */
  async page(after: string | undefined, limit: number, bucket = this.bucket): Promise<{ names: string[]; more: boolean }> {
    const names: string[] = [];
    if (limit <= 0) return { names, more: true };
    let cursor: string | undefined;
    let truncated = false;
    do {
      const page = await bucket.list({
        prefix: keys.repositoriesPrefix,
        limit: Math.min(1000, limit - names.length),
        ...(cursor ? { cursor } : after !== undefined ? { startAfter: keys.repository(after) } : {}),
      });
      for (const object of page.objects) names.push(object.key.slice(keys.repositoriesPrefix.length));
      truncated = page.truncated;
      cursor = page.truncated && names.length < limit ? page.cursor : undefined;
    } while (cursor);
    return { names, more: truncated };
  }
}
