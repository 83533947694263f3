import { MAX_NAME_LENGTH, MAX_TAG_LENGTH } from "../../oci/names";
import type { Page, PageRequest } from "../registry";
import type { CatalogIndex } from "./catalog-index";
import { CACHED_METADATA, keys, lastSegment } from "./keys";
import { tagKeys } from "./tag-keys";

/** Tag and repository listings in R2. */
export class R2Listing {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly index: CatalogIndex,
  ) {}

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
    const items: string[] = [];
    if (n > 0) {
      // Cut to a tag's length (R2 keys are at most 1,024 bytes): no tag sorts between the two.
      // One more than the page needs tells whether more follow.
      const listing = tagKeys(this.bucket, name, { ...(last ? { after: last.slice(0, MAX_TAG_LENGTH) } : {}), wanted: () => n + 1 - items.length });
      for await (const object of listing) {
        items.push(lastSegment(object.key));
        if (items.length > n) break;
      }
    }
    if (items.length === 0 && !(await this.repositoryExists(name))) return null;
    return { items: items.slice(0, n), more: items.length > n };
  }

  /**
   * A page of the catalog. While the one-time backfill of an older bucket is under way (each call
   * runs a bounded slice of it), only the names it has settled are answered, and `more` stays true
   * so the client's next page carries on (possibly with fewer than `n` names, or none).
   */
  async repositories({ n, last }: PageRequest): Promise<Page<string>> {
    const state = await this.index.ensure();
    if (n === 0) return { items: [], more: false };
    // Cut to a name's length (R2 keys are at most 1,024 bytes): no name sorts between the two.
    const page = await this.index.page(last?.slice(0, MAX_NAME_LENGTH), n + 1);
    if (state.done) return { items: page.names.slice(0, n), more: page.names.length > n };
    const settled = state.watermark === undefined ? [] : page.names.filter((name) => name < state.watermark!);
    return { items: settled.slice(0, n), more: true };
  }
}
