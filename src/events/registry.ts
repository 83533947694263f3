import type { ParsedManifest } from "../oci/manifest";
import { parseDigest } from "../oci/digest";
import type { CollectAllOptions, CollectAllReport, CollectOptions, CollectReport } from "../registry/r2/gc";
import { ForwardingRegistry } from "../registry/forwarding";
import type { PutManifestOptions, Registry } from "../registry/registry";
import { collectionEvents, deleteEvent, manifestEvent, type EventContext } from "./event";
import type { Notifier } from "./notifier";

/**
 * A {@link Registry} that tells the notifier what its calls changed, once they succeeded: manifest
 * pushes (one event per tag), manifest, tag and blob deletes, the deletes of garbage collections
 * (from their reports, not dry runs) and, when an endpoint asks for them, manifest pulls (`GET`,
 * not `HEAD`). Everything else passes through. Manifests cached by pull-through are not pushes.
 *
 * @example
 * registry = new NotifyingRegistry(registry, notifier, requestContext(request, url, principal));
 */
export class NotifyingRegistry extends ForwardingRegistry {
  announce?: Registry["announce"];
  hasPushes?: Registry["hasPushes"];
  tagRecords?: Registry["tagRecords"];
  collect?: (name: string, options: CollectOptions) => Promise<CollectReport>;
  collectAll?: (options: CollectAllOptions) => Promise<CollectAllReport>;

  constructor(
    inner: Registry,
    private readonly notifier: Notifier,
    private readonly context: EventContext,
  ) {
    super(inner);
    if (inner.announce) this.announce = (name, digests) => inner.announce!(name, digests);
    if (inner.hasPushes) this.hasPushes = (name) => inner.hasPushes!(name);
    if (inner.tagRecords) this.tagRecords = (name) => inner.tagRecords!(name);
    if (inner.collect) {
      this.collect = async (name, options) => {
        const report = await inner.collect!(name, options);
        notifier.emit(collectionEvents(context, report));
        return report;
      };
    }
    if (inner.collectAll) {
      this.collectAll = async (options) => {
        const report = await inner.collectAll!(options);
        notifier.emit(report.repositories.flatMap((r) => collectionEvents(context, r)));
        return report;
      };
    }
  }

  override async getManifest(name: string, reference: string) {
    const manifest = await this.inner.getManifest(name, reference);
    if (manifest && this.notifier.wants("pull", name)) {
      const tag = parseDigest(reference) === undefined ? reference : undefined;
      this.notifier.emit([manifestEvent(this.context, "pull", name, manifest, tag)]);
    }
    return manifest;
  }

  override async putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options?: PutManifestOptions) {
    const info = await this.inner.putManifest(name, manifest, digest, tags, options);
    if (!options?.cached) {
      const each = tags.length > 0 ? tags : [undefined];
      this.notifier.emit(each.map((tag) => manifestEvent(this.context, "push", name, info, tag)));
    }
    return info;
  }

  override async deleteManifest(name: string, reference: string) {
    const deleted = await this.inner.deleteManifest(name, reference);
    if (deleted) {
      const what = parseDigest(reference) === undefined ? { tag: reference } : { manifest: reference };
      this.notifier.emit([deleteEvent(this.context, name, what)]);
    }
    return deleted;
  }

  override async deleteBlob(name: string, digest: string) {
    const deleted = await this.inner.deleteBlob(name, digest);
    if (deleted) this.notifier.emit([deleteEvent(this.context, name, { blob: digest })]);
    return deleted;
  }

  /** The local registry (no pull-through), still notifying: garbage collection runs on it. */
  withoutUpstreams(): Registry {
    const local = this.inner.withoutUpstreams?.();
    return local ? new NotifyingRegistry(local, this.notifier, this.context) : this;
  }

}
