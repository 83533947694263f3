import type { Chunk, PageRequest, PutManifestOptions, RangeRequest, ReferrersRequest, Registry } from "./registry";
import type { ParsedManifest } from "../oci/manifest";

/**
 * A {@link Registry} that hands every required call to another one: the base of wrappers that
 * change a few calls (notifications, immutable tags) and pass the rest through. The optional
 * members (`announce`, `collect`, …) are each wrapper's own to pass on or not.
 *
 * @example
 * class Logging extends ForwardingRegistry {
 *   override async deleteBlob(name: string, digest: string) {
 *     console.log(`deleting ${name}@${digest}`);
 *     return super.deleteBlob(name, digest);
 *   }
 * }
 */
export class ForwardingRegistry implements Registry {
  constructor(protected readonly inner: Registry) {}

  statBlob(name: string, digest: string) {
    return this.inner.statBlob(name, digest);
  }
  getBlob(name: string, digest: string, range?: RangeRequest) {
    return this.inner.getBlob(name, digest, range);
  }
  deleteBlob(name: string, digest: string) {
    return this.inner.deleteBlob(name, digest);
  }
  mountBlob(name: string, digest: string, from: string) {
    return this.inner.mountBlob(name, digest, from);
  }
  putBlob(name: string, digest: string, chunk: Chunk) {
    return this.inner.putBlob(name, digest, chunk);
  }
  startUpload(name: string) {
    return this.inner.startUpload(name);
  }
  getUpload(name: string, id: string) {
    return this.inner.getUpload(name, id);
  }
  appendUpload(name: string, id: string, chunk: Chunk) {
    return this.inner.appendUpload(name, id, chunk);
  }
  finishUpload(name: string, id: string, digest: string, chunk: Chunk) {
    return this.inner.finishUpload(name, id, digest, chunk);
  }
  cancelUpload(name: string, id: string) {
    return this.inner.cancelUpload(name, id);
  }
  getManifest(name: string, reference: string) {
    return this.inner.getManifest(name, reference);
  }
  statManifest(name: string, reference: string) {
    return this.inner.statManifest(name, reference);
  }
  putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options?: PutManifestOptions) {
    return this.inner.putManifest(name, manifest, digest, tags, options);
  }
  deleteManifest(name: string, reference: string) {
    return this.inner.deleteManifest(name, reference);
  }
  listTags(name: string, page: PageRequest) {
    return this.inner.listTags(name, page);
  }
  listRepositories(page: PageRequest) {
    return this.inner.listRepositories(page);
  }
  listReferrers(name: string, subject: string, page: ReferrersRequest) {
    return this.inner.listReferrers(name, subject, page);
  }
}
