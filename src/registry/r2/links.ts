import { DATA_METADATA, keys, listAll, SYMLINK_METADATA } from "./keys";

/**
 * The index of shared bytes: `_links/<digest>/<name>` says repository `<name>` holds `<digest>`
 * through bytes stored elsewhere, as a symlink (serverless-registry's mount format) or as a
 * pointer to an assembled upload. Deleting bytes asks it who still depends on them. Symlinks and
 * pointers already in a bucket are indexed once, on first use.
 *
 * Deleting shared bytes is guarded by a tombstone: the deleter writes it, then looks for
 * dependants; a mount writes its link, then looks for the tombstone. Whichever writes second sees
 * the other, so a mount never ends pointing at deleted bytes.
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

  /** Repositories that hold `digest` as a symlink or a pointer. */
  async dependants(digest: string): Promise<string[]> {
    await this.backfill();
    const prefix = keys.linksPrefix(digest);
    const names: string[] = [];
    // Flat: repository names have slashes.
    for await (const object of listAll(this.bucket, { prefix, flat: true })) names.push(object.key.slice(prefix.length));
    return names;
  }

  /**
   * Every indexed symlink and pointer: which repository holds which digest through shared bytes.
   * A repository is in the catalog only once it has a manifest; this index has it from its first
   * shared blob on.
   */
  async *entries(): AsyncGenerator<{ digest: string; name: string }> {
    await this.backfill();
    for await (const object of listAll(this.bucket, { prefix: keys.linksRoot, flat: true })) {
      const rest = object.key.slice(keys.linksRoot.length);
      const slash = rest.indexOf("/");
      if (slash > 0) yield { digest: rest.slice(0, slash), name: rest.slice(slash + 1) };
    }
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

  private async backfill(): Promise<void> {
    if (this.backfilled || (await this.bucket.head(keys.linksBackfilled))) {
      this.backfilled = true;
      return;
    }
    for await (const name of this.repositories()) {
      for await (const object of listAll(this.bucket, { prefix: keys.blobsPrefix(name), include: ["customMetadata"] })) {
        const meta = object.customMetadata ?? {};
        if (meta[SYMLINK_METADATA] !== undefined || meta[DATA_METADATA] !== undefined) {
          await this.add(object.key.slice(keys.blobsPrefix(name).length), name);
        }
      }
    }
    await this.bucket.put(keys.linksBackfilled, new Date().toISOString());
    this.backfilled = true;
  }
}
