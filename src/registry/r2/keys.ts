/**
 * The R2 key layout. Repository keys are those of serverless-registry (a bucket it wrote keeps
 * working); keys this registry adds live under top-level names starting with `_`, which no
 * repository name can start with.
 *
 * | key                                  | holds                                                    |
 * |--------------------------------------|----------------------------------------------------------|
 * | `<name>/manifests/<tag>`             | manifest bytes (a full copy), as in the original          |
 * | `<name>/manifests/<digest>`          | manifest bytes, as in the original                        |
 * | `<name>/blobs/<digest>`              | blob bytes, or a symlink object (original mount format)   |
 * | `<name>/_referrers/<subject>/<digest>` | a referrer's descriptor (JSON), as in the original       |
 * | `_repositories/<name>`               | empty marker: the repository exists (catalog index);     |
 * |                                      | custom metadata `r2-registry-cached` while every manifest |
 * |                                      | it got was cached from an upstream (none pushed)          |
 * | `_meta/catalog-backfilled`           | marker: repositories of an older bucket were indexed      |
 * | `_meta/catalog-backfill`             | that backfill's progress while under way (JSON)           |
 * | `_uploads/<id>/created`              | an upload session as opened: repository, data key (JSON;  |
 * |                                      | written once, by the POST)                                 |
 * | `_uploads/<id>`                      | the session's state (JSON): written by the first request   |
 * |                                      | that stores bytes, then at most every 2 s                  |
 * | `_uploads/<id>/after-<offset>`       | the state after a request that started at `<offset>`, when |
 * |                                      | `_uploads/<id>` was written too recently (written once)    |
 * | `_uploads/<id>/lease-<offset>`       | the request writing from `<offset>`, until when (JSON)     |
 * | `_uploads/<id>/tail-<n>`             | older sessions' received bytes (removed by the sweep)      |
 * | `_uploads/<id>/data`                 | reserved (older sessions' multipart uploads)               |
 * | `_data/<id>`                         | an upload's bytes: its first segment (or, from older       |
 * |                                      | versions, every part as one R2 multipart object)           |
 * | `_data/<id>/<i>`                     | the upload's segment `i` (see `segments.ts`)               |
 * | `_links/<digest>/<name>`             | `<name>` holds the blob as a symlink or a pointer (shared) |
 * | `_meta/links-v2-backfilled`          | marker: symlinks and pointers already stored were indexed  |
 * | `_meta/links-v2-backfill`            | that backfill's progress while under way (JSON)            |
 * | `_pullthrough/tags/<name>/<tag>`     | when a tag cached from an upstream was last checked        |
 * | `_retention/runs/<id>`               | a retention run's progress (`scheduled`: the cron's run)   |
 * | `_gc/<name>/_state`                  | a garbage collection's sweep lease on the repository      |
 * | `_gc/<name>/_intents/<id>`           | a manifest push in progress: the digests it relies on      |
 * | `_gc/_tombstones/<data key>`         | shared bytes about to be deleted (mounts back off)         |
 * | `_gc/_runs/<id>`                     | a registry-wide collection's progress (`scheduled`: cron)  |
 * | `_gc/_collections/<id>`              | a repository's collection left half-done (its marks)       |
 *
 * A blob key holds one of three things: the bytes; a symlink (custom metadata
 * `X-Serverless-Registry-Symlink` = the repository holding the bytes, the original's mount
 * format); or a pointer (custom metadata `r2-registry-data` = a `_data/<id>` key and `size`;
 * with `r2-registry-segments`, the body lists the sizes of the segments), which is how uploads
 * are published without copying them.
 *
 * Every key fits R2's {@link MAX_KEY_BYTES}: names (≤ 255 characters), tags (≤ 128) and digests
 * (≤ 256, `MAX_DIGEST_LENGTH`) are refused beyond their bounds before anything is written, all
 * ASCII, and upload and intent ids are UUIDs. The longest key, `<name>/_referrers/<subject>/<digest>`,
 * is then 255 + 12 + 256 + 1 + 256 = 780 bytes; `_gc/_tombstones/<name>/blobs/<digest>` 534;
 * `<name>/manifests/<digest>` 522; `_links/<digest>/<name>` 519 (`test/worker/limits.test.ts`
 * checks every shape below).
 */
export const keys = {
  manifestsPrefix: (name: string) => `${name}/manifests/`,
  manifest: (name: string, reference: string) => `${name}/manifests/${reference}`,
  blobsPrefix: (name: string) => `${name}/blobs/`,
  blob: (name: string, digest: string) => `${name}/blobs/${digest}`,
  referrersRoot: (name: string) => `${name}/_referrers/`,
  referrersPrefix: (name: string, subject: string) => `${name}/_referrers/${subject}/`,
  referrer: (name: string, subject: string, digest: string) => `${name}/_referrers/${subject}/${digest}`,
  repositoriesPrefix: "_repositories/",
  repository: (name: string) => `_repositories/${name}`,
  catalogBackfilled: "_meta/catalog-backfilled",
  catalogProgress: "_meta/catalog-backfill",
  uploadsPrefix: "_uploads/",
  upload: (id: string) => `_uploads/${id}`,
  uploadCreated: (id: string) => `_uploads/${id}/created`,
  uploadAfter: (id: string, offset: number) => `_uploads/${id}/after-${offset}`,
  uploadLease: (id: string, offset: number) => `_uploads/${id}/lease-${offset}`,
  uploadTail: (id: string, serial: number) => `_uploads/${id}/tail-${serial}`,
  uploadData: (id: string) => `_uploads/${id}/data`,
  data: (id: string) => `_data/${id}`,
  linksRoot: "_links/",
  linksPrefix: (digest: string) => `_links/${digest}/`,
  link: (digest: string, name: string) => `_links/${digest}/${name}`,
  linksBackfilled: "_meta/links-v2-backfilled",
  linksProgress: "_meta/links-v2-backfill",
  pullThroughTag: (name: string, tag: string) => `_pullthrough/tags/${name}/${tag}`,
  gcState: (name: string) => `_gc/${name}/_state`,
  intentsPrefix: (name: string) => `_gc/${name}/_intents/`,
  intent: (name: string, id: string) => `_gc/${name}/_intents/${id}`,
  tombstonesPrefix: "_gc/_tombstones/",
  tombstone: (dataKey: string) => `_gc/_tombstones/${dataKey}`,
  runsPrefix: "_gc/_runs/",
  run: (id: string) => `_gc/_runs/${id}`,
  collectionsPrefix: "_gc/_collections/",
  collection: (id: string) => `_gc/_collections/${id}`,
};

/** R2's longest object key, in bytes (https://developers.cloudflare.com/r2/platform/limits/). */
export const MAX_KEY_BYTES = 1024;

/** customMetadata key marking a mounted blob in the original's format; its value is the source repository. */
export const SYMLINK_METADATA = "X-Serverless-Registry-Symlink";

/** customMetadata key of a pointer object: the key holding the blob's bytes. */
export const DATA_METADATA = "r2-registry-data";

/**
 * customMetadata key of a `_repositories/<name>` marker (value `true`) while the repository holds
 * only manifests cached by pull-through; the first pushed manifest rewrites the marker without it.
 */
export const CACHED_METADATA = "r2-registry-cached";

/**
 * customMetadata key of a manifest key: when it was written (ISO 8601), i.e. for a tag key when the
 * tag was last pushed. Objects written by serverless-registry lack it: their upload time says.
 */
export const PUSHED_METADATA = "r2-registry-pushed";

/** customMetadata key of a pointer to segments: how many (their sizes are the pointer's body). */
export const SEGMENTS_METADATA = "r2-registry-segments";

/** The last `/` segment of a key. */
export function lastSegment(key: string): string {
  return key.slice(key.lastIndexOf("/") + 1);
}

/**
 * Lists every key under a prefix, page by page: one level (`delimiter` "/"), or with `flat` every
 * key below it, nested ones included.
 *
 * @example
 * for await (const object of listAll(bucket, { prefix: "repo/blobs/" })) console.log(object.key);
 * for await (const object of listAll(bucket, { prefix: "_links/", flat: true })) console.log(object.key);
 */
export async function* listAll(
  bucket: R2Bucket,
  options: { prefix: string; flat?: boolean; startAfter?: string; include?: ("customMetadata" | "httpMetadata")[] },
): AsyncGenerator<R2Object> {
  let cursor: string | undefined;
  do {
    const page = await bucket.list({
      prefix: options.prefix,
      ...(options.flat ? {} : { delimiter: "/" }),
      limit: 1000,
      ...(cursor ? { cursor } : options.startAfter ? { startAfter: options.startAfter } : {}),
      ...(options.include ? { include: options.include } : {}),
    });
    for (const object of page.objects) yield object;
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}

/** Deletes keys in batches of 1,000 (R2's limit per call). */
export async function deleteKeys(bucket: R2Bucket, list: string[]): Promise<void> {
  for (let i = 0; i < list.length; i += 1000) await bucket.delete(list.slice(i, i + 1000));
}
