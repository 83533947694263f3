/**
 * The local R2 bucket a dev server persisted, opened with miniflare while no server runs: for what
 * no client can do, such as making a tag look pushed days ago. `wrangler dev --persist-to <dir>`
 * (which `scripts/dev.mjs` runs with `REGISTRY_STATE_DIR`) keeps its R2 buckets under
 * `<dir>/v3/r2`: their objects' metadata in `miniflare-R2BucketObject/`, their bytes in
 * `<bucket name>/blobs/`.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Miniflare } from "miniflare";

export type LocalBucket = Awaited<ReturnType<Miniflare["getR2Bucket"]>>;

/** The custom metadata recording when a tag was last pushed (`PUSHED_METADATA` in src/registry/r2/keys.ts). */
export const PUSHED_METADATA = "r2-registry-pushed";

/**
 * Runs `use` on the bucket a dev server left in `stateDir`, then closes it. Stop the server first:
 * two workerd processes must not write the same files.
 *
 * @example
 * await server.stop();
 * await withLocalBucket(server.stateDir, (bucket) => setPushed(bucket, "team/app", "ci-1", new Date("2026-01-01")));
 */
export async function withLocalBucket<T>(stateDir: string, use: (bucket: LocalBucket) => Promise<T>): Promise<T> {
  const r2 = join(stateDir, "v3", "r2");
  // The bucket's bytes live in a directory named after it, next to miniflare's own.
  const names = readdirSync(r2).filter((entry) => !entry.startsWith("miniflare-"));
  if (names.length !== 1) throw new Error(`${r2}: expected one bucket, found ${JSON.stringify(names)}`);
  const miniflare = new Miniflare({ modules: true, script: "export default {};", r2Persist: r2, r2Buckets: { BUCKET: names[0]! } });
  try {
    return await use(await miniflare.getR2Bucket("BUCKET"));
  } finally {
    await miniflare.dispose();
  }
}

/**
 * Makes tag `name:tag` look last pushed at `pushed`: writes its key (`<name>/manifests/<tag>`)
 * again with the same bytes, content type, checksum and metadata but `r2-registry-pushed`.
 */
export async function setPushed(bucket: LocalBucket, name: string, tag: string, pushed: Date): Promise<void> {
  const key = `${name}/manifests/${tag}`;
  const object = await bucket.get(key);
  if (!object) throw new Error(`no tag ${name}:${tag} in the bucket (${key})`);
  const bytes = new Uint8Array(await object.arrayBuffer());
  const { sha256 } = object.checksums;
  await bucket.put(key, bytes, {
    httpMetadata: object.httpMetadata,
    customMetadata: { ...object.customMetadata, [PUSHED_METADATA]: pushed.toISOString() },
    ...(sha256 ? { sha256 } : {}),
  });
}
