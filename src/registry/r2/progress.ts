/** A JSON record read from R2 with the etag it was read at. */
export interface Stored<T> {
  value: T;
  etag: string;
}

/**
 * Reads a JSON record (a backfill's or a collection's progress); undefined when absent or unreadable.
 *
 * @example
 * const progress = await loadJson<{ after?: string }>(bucket, "_meta/links-v2-backfill");
 */
export async function loadJson<T>(bucket: R2Bucket, key: string): Promise<Stored<T> | undefined> {
  const object = await bucket.get(key);
  if (!object) return undefined;
  try {
    return { value: JSON.parse(await object.text()) as T, etag: object.etag };
  } catch {
    return undefined;
  }
}

/**
 * Writes a JSON record only over the version read (`etag`), or only if absent (`etag`
 * undefined): two invocations working on the same record never overwrite each other's progress
 * with an older one. Answers the new etag, or undefined when someone else wrote it meanwhile.
 *
 * @example
 * const etag = await saveJson(bucket, "_meta/links-v2-backfill", { after: "team/app" }, stored?.etag);
 */
export async function saveJson(bucket: R2Bucket, key: string, value: unknown, etag: string | undefined): Promise<string | undefined> {
  const written = await bucket.put(key, JSON.stringify(value), {
    httpMetadata: { contentType: "application/json" },
    onlyIf: etag === undefined ? { etagDoesNotMatch: "*" } : { etagMatches: etag },
  });
  return written?.etag;
}
