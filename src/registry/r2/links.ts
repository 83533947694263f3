import { RegistryError } from "../../errors";
import { Budget, type Limits } from "./budget";
import type { CatalogIndex } from "./catalog-index";
import { DATA_METADATA, keys, listAll, SYMLINK_METADATA } from "./keys";
import { loadJson, saveJson, type Stored } from "./progress";

/** Progress of the links backfill: repositories up to `after` are indexed, `current` up to `blobAfter`. */
interface Progress {
  v: 1;
  after?: string;
  current?: string;
  blobAfter?: string;
}

/**
 * The index of shared bytes: `_links/<digest>/<name>` says repository `<name>` holds `<digest>`
 * through bytes stored elsewhere, as a symlink (serverless-registry's mount format) or as a
 * pointer to an assembled upload. Deleting bytes asks it who still depends on them. Symlinks and
 * pointers already in a bucket are indexed once, a bounded slice per request that needs the index
 * (progress at `_meta/links-v2-backfill`): until that is complete, deleting shared bytes answers a
 * retryable 503 and freeing an upload's bytes is left to the sweep of orphans.
 *
 * Deleting shared bytes is guarded by a tombstone: the deleter writes it, then looks for
 * dependants; a mount writes its link, then looks for the tombstone. Whichever writes second sees
 * the other, so a mount never ends pointing at deleted bytes.
 *
 * @example
 * const users = await links.users(digest, { dataKey: "_data/1f0e…" });
 */
export class R2Links {
  constructor(
    private readonly bucket: R2Bucket,
    /** The catalog index: the one-time backfill visits every repository it names. */
    private readonly index: CatalogIndex,
    /** What a request that triggers the backfill may spend on it (see `requestSlice`). */
    private readonly limits: Limits,
  ) {}

  async add(digest: string, name: string): Promise<void> {
    await this.bucket.put(keys.link(digest, name), "");
  }

  async remove(digest: string, name: string): Promise<void> {
    await this.bucket.delete(keys.link(digest, name));
  }

  /** Repositories that hold `digest` as a symlink or a pointer; UNAVAILABLE while not yet indexed. */
  async dependants(digest: string): Promise<string[]> {
    if (!(await this.backfill())) {
      throw new RegistryError("UNAVAILABLE", "the registry is indexing the shared blobs of an older bucket (once); retry in a few seconds", {
        headers: { "Retry-After": "5" },
      });
    }
    const prefix = keys.linksPrefix(digest);
    const names: string[] = [];
    // Flat: repository names have slashes.
    for await (const object of listAll(this.bucket, { prefix, flat: true })) names.push(object.key.slice(prefix.length));
    return names;
  }

  /**
   * Repositories whose blob key for `digest` still uses the bytes at `dataKey`: a pointer to it,
   * or a symlink to the repository `holder` whose key it is. `except` is left out.
   */
  async users(digest: string, target: { dataKey: string; holder?: string }, except?: string): Promise<string[]> {
    const users: string[] = [];
    for (const name of await this.dependants(digest)) {
      if (name === except) continue;
      const object = await this.bucket.head(keys.blob(name, digest));
      const meta = object?.customMetadata ?? {};
      if (meta[DATA_METADATA] === target.dataKey || (target.holder !== undefined && meta[SYMLINK_METADATA] === target.holder)) {
        users.push(name);
      }
    }
    return users;
  }

  /** Marks bytes as about to be deleted. */
  async bury(dataKey: string): Promise<void> {
    await this.bucket.put(keys.tombstone(dataKey), String(Date.now()));
  }

  async unbury(dataKey: string): Promise<void> {
    await this.bucket.delete(keys.tombstone(dataKey));
  }

  /** True when bytes may be deleted (or are gone): a mount that just linked to them must back off. */
  async doomed(dataKey: string): Promise<boolean> {
    // The tombstone first: the bytes go before it does, so this order never misses both.
    if (await this.bucket.head(keys.tombstone(dataKey))) return true;
    return (await this.bucket.head(dataKey)) === null;
  }

  private backfilled = false;

  /**
   * Indexes the symlinks and pointers of a bucket written before this index existed, a bounded
   * slice at a time (`budget`, else a request's slice); true once complete. Never throws: a slice
   * that fails keeps its progress unsaved and is retried later.
   *
   * @example
   * if (!(await links.backfill(budget))) return; // not indexed yet: carry on next time
   */
  async backfill(budget?: Budget): Promise<boolean> {
    if (this.backfilled) return true;
    const work = budget ?? Budget.start(this.bucket, this.limits);
    const bucket = work.bucket;
    if (!work.allows(2)) return false;
    if (await bucket.head(keys.linksBackfilled)) return (this.backfilled = true);
    if (!(await this.index.ensure(work)).done) return false;
    let stored: Stored<Progress> | undefined;
    try {
      stored = await loadJson<Progress>(bucket, keys.linksProgress);
      const progress: Progress = stored?.value ?? { v: 1 };
      for (;;) {
        if (!work.allows(3)) return await this.pause(bucket, progress, stored);
        const { names, more } = await this.index.page(progress.after, 100, bucket);
        for (const name of names) {
          let startAfter = progress.current === name ? progress.blobAfter : undefined;
          const prefix = keys.blobsPrefix(name);
          for (;;) {
            // A page of k keys costs at most 1 + k calls (a write per symlink or pointer).
            if (!work.allows(4)) return await this.pause(bucket, { ...progress, current: name, ...(startAfter ? { blobAfter: startAfter } : {}) }, stored);
            const page = await bucket.list({
              prefix,
              limit: Math.min(1000, work.left - 3),
              include: ["customMetadata"],
              ...(startAfter ? { startAfter } : {}),
            });
            for (const object of page.objects) {
              const meta = object.customMetadata ?? {};
              if (meta[SYMLINK_METADATA] !== undefined || meta[DATA_METADATA] !== undefined) {
                await bucket.put(keys.link(object.key.slice(prefix.length), name), "");
              }
              startAfter = object.key;
            }
            if (!page.truncated) break;
          }
          progress.after = name;
          delete progress.current;
          delete progress.blobAfter;
        }
        if (!more) break;
      }
      await bucket.put(keys.linksBackfilled, new Date().toISOString());
      await bucket.delete(keys.linksProgress);
      return (this.backfilled = true);
    } catch (error) {
      console.error("r2-registry: a slice of the links backfill failed (it resumes later):", error);
      return false;
    }
  }

  private async pause(bucket: R2Bucket, progress: Progress, stored: Stored<Progress> | undefined): Promise<false> {
    await saveJson(bucket, keys.linksProgress, progress, stored?.etag);
    return false;
  }
}
