import { keys, listAll, SYMLINK_METADATA } from "./keys";

/**
 * The index of symlinks: `_links/<digest>/<name>` says repository `<name>` holds `<digest>` as a
 * symlink to another repository's bytes. Deleting those bytes asks it who depends on them.
 * Symlinks written by serverless-registry are indexed once, on first use.
 */
export class R2Links {
  constructor(
    private readonly bucket: R2Bucket,
    /** Every repository name (the catalog index), for the one-time backfill. */
    private readonly repositories: () => AsyncIterable<string>,
  ) {}

  async add(digest: string, name: string): Promise<void> {
    await this.bucket.put(keys.link(digest, name), "");
  }

  async remove(digest: string, name: string): Promise<void> {
    await this.bucket.delete(keys.link(digest, name));
  }

  /** Repositories that hold `digest` as a symlink. */
  async dependants(digest: string): Promise<string[]> {
    await this.backfill();
    const prefix = keys.linksPrefix(digest);
    const names: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.bucket.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const object of page.objects) names.push(object.key.slice(prefix.length));
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    return names;
  }

  private async backfill(): Promise<void> {
    if (await this.bucket.head(keys.linksBackfilled)) return;
    for await (const name of this.repositories()) {
      for await (const object of listAll(this.bucket, { prefix: keys.blobsPrefix(name), include: ["customMetadata"] })) {
        if (object.customMetadata?.[SYMLINK_METADATA] !== undefined) {
          await this.add(object.key.slice(keys.blobsPrefix(name).length), name);
        }
      }
    }
    await this.bucket.put(keys.linksBackfilled, new Date().toISOString());
  }
}
