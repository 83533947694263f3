import { RegistryError } from "../../errors";
import type { ParsedManifest } from "../../oci/manifest";
import { parseDigest, requireVerifiableDigest } from "../../oci/digest";
import type { Chunk, PageRequest, PutManifestOptions, RangeRequest, ReferrersRequest, Registry } from "../registry";
import { R2Blobs, type BlobLimits } from "./blobs";
import { Budget, type Limits } from "./budget";
import { CatalogIndex, requestSlice } from "./catalog-index";
import { R2Fence } from "./fence";
import { collectAll, R2Collector, type CollectAllOptions, type CollectOptions } from "./gc";
import { R2Links } from "./links";
import { R2Listing } from "./listing";
import { R2Manifests } from "./manifests";
import { R2Referrers } from "./referrers";
import { tagRecords } from "./tag-records";
import { DEFAULT_PART_SIZE, R2Uploads } from "./uploads";

/** Default bounds of a collection's invocation (see `GC_MAX_OPERATIONS`, `GC_MAX_SECONDS`). */
const DEFAULT_LIMITS: Limits = { operations: 8000, ms: 30_000 };

/**
 * The registry on one R2 bucket, in serverless-registry's key layout (see `keys.ts`). `limits`
 * bounds what one invocation of a garbage collection does (and, halved, the one-time backfills a
 * request may trigger). Make one per request: it keeps what a request read for that request's
 * writes (see `R2Manifests`).
 *
 * @example
 * const registry = new R2Registry(env.REGISTRY);
 * const tags = await registry.listTags("library/alpine", { n: 100 });
 */
export class R2Registry implements Registry {
  private readonly blobs: R2Blobs;
  private readonly uploads: R2Uploads;
  private readonly manifests: R2Manifests;
  private readonly listing: R2Listing;
  private readonly referrers: R2Referrers;
  private readonly links: R2Links;
  private readonly fence: R2Fence;

  private readonly partSize: number;
  private readonly limits: Limits;

  /**
   * `partSize`: the parts a body of unknown length is cut into (`UPLOAD_PART_SIZE`); `limits`:
   * garbage collection's budgets; `blobLimits`: where R2's limits on one write fall (tests lower
   * them to take the multipart paths).
   */
  constructor(
    private readonly bucket: R2Bucket,
    options: { partSize?: number; limits?: Limits; blobLimits?: BlobLimits } = {},
  ) {
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.limits = options.limits ?? DEFAULT_LIMITS;
    const index = new CatalogIndex(bucket, requestSlice(this.limits));
    this.listing = new R2Listing(bucket, index);
    this.links = new R2Links(bucket, index, requestSlice(this.limits));
    this.fence = new R2Fence(bucket);
    this.blobs = new R2Blobs(bucket, this.links, options.blobLimits);
    this.uploads = new R2Uploads(bucket, this.blobs, this.partSize);
    this.referrers = new R2Referrers(bucket);
    this.manifests = new R2Manifests(bucket, this.referrers);
  }

  statBlob(name: string, digest: string) {
    return this.blobs.stat(name, digest);
  }
  getBlob(name: string, digest: string, range?: RangeRequest) {
    return this.blobs.get(name, digest, range);
  }
  deleteBlob(name: string, digest: string) {
    return this.blobs.delete(name, digest);
  }
  mountBlob(name: string, digest: string, from: string) {
    const parsed = parseDigest(digest);
    return parsed ? this.blobs.mount(name, parsed, from) : Promise.resolve(null);
  }

  async putBlob(name: string, digest: string, chunk: Chunk) {
    const verified = requireVerifiableDigest(digest);
    if (chunk.length !== undefined && this.blobs.fitsOnePut(chunk.length)) {
      // One request with the whole blob and its length: straight to the blob key, R2 checks the digest.
      if (!chunk.body || chunk.length === 0) return this.blobs.put(name, verified, new Uint8Array(0), 0);
      return this.blobs.put(name, verified, chunk.body, chunk.length);
    }
    const session = await this.uploads.start(name);
    return this.uploads.finish(name, session.id, verified, chunk);
  }

  startUpload(name: string) {
    return this.uploads.start(name);
  }
  getUpload(name: string, id: string) {
    return this.uploads.status(name, id);
  }
  appendUpload(name: string, id: string, chunk: Chunk) {
    return this.uploads.append(name, id, chunk);
  }
  finishUpload(name: string, id: string, digest: string, chunk: Chunk) {
    return this.uploads.finish(name, id, requireVerifiableDigest(digest), chunk);
  }
  cancelUpload(name: string, id: string) {
    return this.uploads.cancel(name, id);
  }

  getManifest(name: string, reference: string) {
    return this.manifests.get(name, reference);
  }
  statManifest(name: string, reference: string) {
    return this.manifests.stat(name, reference);
  }
  putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options?: PutManifestOptions) {
    return this.manifests.put(name, manifest, digest, tags, options);
  }
  deleteManifest(name: string, reference: string) {
    return this.manifests.delete(name, reference);
  }

  hasPushes(name: string) {
    return this.listing.hasPushes(name);
  }
  tagRecords(name: string) {
    return tagRecords(this.bucket, this.manifests, name);
  }

  listTags(name: string, page: PageRequest) {
    return this.listing.tags(name, page);
  }
  listRepositories(page: PageRequest) {
    return this.listing.repositories(page);
  }
  listReferrers(name: string, subject: string, page: ReferrersRequest) {
    return this.referrers.list(name, subject, page);
  }

  announce(name: string, digests: string[]) {
    return this.fence.announce(name, digests);
  }
  collect(name: string, options: CollectOptions) {
    const budget = Budget.start(this.bucket, this.limits);
    const [blobs, links, fence] = this.gcParts(budget.bucket);
    return new R2Collector(budget.bucket, blobs, links, fence).collect(name, options, budget);
  }
  collectAll(options: CollectAllOptions) {
    const budget = Budget.start(this.bucket, this.limits);
    const [blobs, links, fence, index] = this.gcParts(budget.bucket);
    return collectAll({ bucket: budget.bucket, blobs, links, fence, index }, options, budget);
  }

  /** A collection's parts on `bucket` (its budget's, which counts every call). */
  private gcParts(bucket: R2Bucket): [R2Blobs, R2Links, R2Fence, CatalogIndex] {
    const index = new CatalogIndex(bucket, this.limits);
    const links = new R2Links(bucket, index, this.limits);
    return [new R2Blobs(bucket, links), links, new R2Fence(bucket), index];
  }
}
