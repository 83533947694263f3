import { isTag, MAX_NAME_LENGTH } from "../../oci/names";
import type { Page, PageRequest } from "../registry";
import { CACHED_METADATA, keys, lastSegment } from "./keys";

/** Sub-folders of a repository in the original's layout (never nested repositories' roots here). */
const INTERNAL_FOLDERS = new Set(["manifests/", "blobs/", "uploads/", "_referrers/", "insertion/", "gc/"]);
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

/** Tag and repository listings in R2. */
export class R2Listing {
  constructor(private readonly bucket: R2Bucket) {}

  /** True when a repository has (or had) manifests. */
  async repositoryExists(name: string): Promise<boolean> {
    if (await this.bucket.head(keys.repository(name))) return true;
    const page = await this.bucket.list({ prefix: keys.manifestsPrefix(name), limit: 1 });
    return page.objects.length > 0;
  }

  /**
   * True when the repository holds a manifest a client pushed: its marker is there without the
   * cached-only mark. One read; a repository without a marker (new, or written by
   * serverless-registry and not indexed yet) costs one listing more, and counts as pushed if it
   * has any manifest.
   */
  async hasPushes(name: string): Promise<boolean> {
    const marker = await this.bucket.head(keys.repository(name));
    if (marker) return marker.customMetadata?.[CACHED_METADATA] === undefined;
    const page = await this.bucket.list({ prefix: keys.manifestsPrefix(name), limit: 1 });
    return page.objects.length > 0;
  }

  async tags(name: string, { n, last }: PageRequest): Promise<Page<string> | null> {
    const prefix = keys.manifestsPrefix(name);
    const items: string[] = [];
    let startAfter = last ? prefix + last : undefined;
    let cursor: string | undefined;
    while (n > 0) {
      const page = await this.bucket.list({
        prefix,
        delimiter: "/",
        // One more than the page needs tells whether more follow.
        limit: Math.min(1000, n + 1 - items.length),
        ...(cursor ? { cursor } : startAfter ? { startAfter } : {}),
      });
      let jumpTo: string | undefined;
      for (const object of page.objects) {
        const tag = lastSegment(object.key);
        const colon = tag.indexOf(":");
        if (colon >= 0) {
          // Digest keys (`sha256:…`) sort in one block among the tags: jump over the whole block
          // (no tag contains ":", and ";" is the character after it).
          jumpTo = `${prefix}${tag.slice(0, colon)};`;
          break;
        }
        if (isTag(tag)) items.push(tag);
        if (items.length > n) break;
      }
      if (items.length > n) break;
      if (jumpTo) {
        startAfter = jumpTo;
        cursor = undefined;
      } else if (page.truncated) {
        cursor = page.cursor;
      } else {
        break;
      }
    }
    if (items.length === 0 && !(await this.repositoryExists(name))) return null;
    return { items: items.slice(0, n), more: items.length > n };
  }

  async repositories({ n, last }: PageRequest): Promise<Page<string>> {
    await this.backfill();
    const items: string[] = [];
    if (n > 0) {
      let cursor: string | undefined;
      do {
        const page = await this.bucket.list({
          prefix: keys.repositoriesPrefix,
          limit: Math.min(1000, n + 1 - items.length),
          ...(cursor ? { cursor } : last ? { startAfter: keys.repository(last) } : {}),
        });
        for (const object of page.objects) items.push(object.key.slice(keys.repositoriesPrefix.length));
        cursor = page.truncated && items.length <= n ? page.cursor : undefined;
      } while (cursor);
    }
    return { items: items.slice(0, n), more: items.length > n };
  }

  /** Every repository name, in lexical order. */
  async *allRepositories(): AsyncGenerator<string> {
    await this.backfill();
    let cursor: string | undefined;
    do {
      const page = await this.bucket.list({ prefix: keys.repositoriesPrefix, limit: 1000, ...(cursor ? { cursor } : {}) });
      for (const object of page.objects) yield object.key.slice(keys.repositoriesPrefix.length);
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
  }

  /**
   * Indexes the repositories of a bucket written before the catalog index existed (by
   * serverless-registry), once: a walk over folder names (R2 listings with a "/" delimiter), not
   * over every key.
   */
  private async backfill(): Promise<void> {
    if (await this.bucket.head(keys.catalogBackfilled)) return;
    const found: string[] = [];
    const walk = async (prefix: string): Promise<void> => {
      const children: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await this.bucket.list({ prefix, delimiter: "/", limit: 1000, ...(cursor ? { cursor } : {}) });
        children.push(...page.delimitedPrefixes);
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
      const name = prefix.slice(0, -1);
      if (children.includes(`${prefix}manifests/`) && name.length <= MAX_NAME_LENGTH && NAME.test(name)) found.push(name);
      for (const child of children) {
        if (!INTERNAL_FOLDERS.has(child.slice(prefix.length))) await walk(child);
      }
    };
    const top = await this.bucket.list({ delimiter: "/", limit: 1000 });
    let prefixes = top.delimitedPrefixes;
    let cursor = top.truncated ? top.cursor : undefined;
    while (cursor) {
      const page = await this.bucket.list({ delimiter: "/", limit: 1000, cursor });
      prefixes = prefixes.concat(page.delimitedPrefixes);
      cursor = page.truncated ? page.cursor : undefined;
    }
    for (const prefix of prefixes) if (!prefix.startsWith("_")) await walk(prefix);
    // Markers pushes created meanwhile are not written again (R2 takes one write of a key per second).
    await Promise.all(
      found.map(async (name) => {
        if (!(await this.bucket.head(keys.repository(name)))) await this.bucket.put(keys.repository(name), "", { onlyIf: { etagDoesNotMatch: "*" } });
      }),
    );
    await this.bucket.put(keys.catalogBackfilled, new Date().toISOString());
  }
}
