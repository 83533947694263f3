import { DATA_METADATA, keys, listAll } from "../keys";
import type { R2Links } from "../links";
import { dataKeyOf } from "../segments";
import type { AnySessionState } from "../sessions";

/** What the sweep of assembled uploads found. */
export interface OrphanReport {
  /** `_data/` objects no pointer uses, deleted (or, in a dry run, that would be). */
  objects: number;
  bytes: number;
}

/**
 * The `_data/` keys in use: those pointers of every catalogued repository name, those the links
 * index names, and those of upload sessions still open (their segments are stored as they
 * arrive). A repository enters the catalog with its first manifest, so a pointer published before
 * that (an upload finishing ahead of its manifest) is found through the index only; `share()`
 * indexes a pointer before it writes it, and a session is removed only after it published.
 */
async function pointedAt(bucket: R2Bucket, links: R2Links, repositories: () => AsyncIterable<string>): Promise<Set<string>> {
  const used = new Set<string>();
  for await (const name of repositories()) {
    for await (const object of listAll(bucket, { prefix: keys.blobsPrefix(name), include: ["customMetadata"] })) {
      const data = object.customMetadata?.[DATA_METADATA];
      if (data) used.add(data);
    }
  }
  for await (const { digest, name } of links.entries()) {
    const data = (await bucket.head(keys.blob(name, digest)))?.customMetadata?.[DATA_METADATA];
    if (data) used.add(data);
  }
  // A session's state, or its `created` record before any bytes (its `after-` records name the same data key).
  for await (const object of listAll(bucket, { prefix: keys.uploadsPrefix, flat: true })) {
    const rest = object.key.slice(keys.uploadsPrefix.length);
    if (rest.includes("/") && !rest.endsWith("/created")) continue;
    const state = await bucket.get(object.key);
    try {
      const dataKey = state ? (JSON.parse(await state.text()) as AnySessionState).dataKey : undefined;
      if (dataKey) used.add(dataKey);
    } catch {
      // Not a session state: nothing it could use.
    }
  }
  return used;
}

/**
 * Deletes uploads' bytes (`_data/<id>` and its segments) that no pointer or open session uses and that are older
 * than `graceMs`: bytes of uploads whose finish failed half-way, or lost a race. Reads every
 * repository's blob keys, so it belongs to registry-wide runs. A tombstone on each candidate,
 * then a second look at every pointer, keeps a concurrent mount from ending up on deleted bytes.
 *
 * @example
 * await sweepOrphans(bucket, links, () => listing.allRepositories(), 3_600_000);
 */
export async function sweepOrphans(
  bucket: R2Bucket,
  links: R2Links,
  repositories: () => AsyncIterable<string>,
  graceMs: number,
  options: { dryRun?: boolean } = {},
): Promise<OrphanReport> {
  const cutoff = Date.now() - graceMs;
  let used = await pointedAt(bucket, links, repositories);
  const candidates: R2Object[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: "_data/", limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const object of page.objects) if (!used.has(dataKeyOf(object.key)) && object.uploaded.getTime() <= cutoff) candidates.push(object);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  const report: OrphanReport = { objects: 0, bytes: 0 };
  if (candidates.length === 0) return report;
  if (options.dryRun) return { objects: candidates.length, bytes: candidates.reduce((sum, o) => sum + o.size, 0) };
  const buried = [...new Set(candidates.map((object) => dataKeyOf(object.key)))];
  for (const dataKey of buried) await links.bury(dataKey);
  try {
    used = await pointedAt(bucket, links, repositories);
    const doomed = candidates.filter((object) => !used.has(dataKeyOf(object.key)));
    for (let i = 0; i < doomed.length; i += 1000) await bucket.delete(doomed.slice(i, i + 1000).map((o) => o.key));
    return { objects: doomed.length, bytes: doomed.reduce((sum, o) => sum + o.size, 0) };
  } finally {
    for (const dataKey of buried) await links.unbury(dataKey).catch(() => undefined);
  }
}
