import { RegistryError } from "../errors";
import { parseDigest } from "../oci/digest";
import { referencesOf, type ParsedManifest } from "../oci/manifest";
import { ForwardingRegistry } from "../registry/forwarding";
import type { PutManifestOptions, PutManifestResult, Registry } from "../registry/registry";
import type { CollectAllOptions, CollectOptions } from "../registry/r2/gc";
import type { ImmutableRule, ImmutableTags } from "./immutable";

/**
 * The status of a refusal: 409 Conflict, with the OCI code `DENIED` and a message naming the tag
 * and the rule. docker, podman and skopeo print the code and message of any 4xx answer alike
 * (`denied: …`); containerd 1.6's pusher prints only the status line, where "409 Conflict" says the
 * tag holds something else, "403 Forbidden" sends people to check their login, and Harbor's
 * "412 Precondition Failed" names a condition the client never sent.
 */
export const REFUSAL_STATUS = 409;

/** Where an immutable tag reaches a manifest or blob. */
interface Hold {
  tag: string;
  rule: ImmutableRule;
  /** The manifest (the tag's own, or one it reaches through an index) holding the target. */
  via: string;
}

function refused(message: string, detail: Record<string, unknown>): RegistryError {
  return new RegistryError("DENIED", message, { status: REFUSAL_STATUS, detail });
}

async function bytesOf(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/**
 * Immutable tags (`IMMUTABLE_TAGS`) enforced on every route: a {@link Registry} wrapping another
 * (over the pull-through wrapper, so manifests cached from upstreams are never refused; under
 * notifications, so a refused write is never notified) that refuses, with `DENIED`, to move an immutable tag to another digest, to delete it, to
 * delete by digest a manifest an immutable tag reaches (its own, or a child of its index), and to
 * delete a blob such a manifest references. Pushing the same digest again succeeds without
 * rewriting the tag; a new immutable tag is created atomically (see
 * {@link PutManifestOptions.createOnly}), so two concurrent first pushes cannot both win.
 *
 * @example
 * const registry = new ImmutableRegistry(new R2Registry(env.REGISTRY), parseImmutableTags("*:v*", []));
 */
export class ImmutableRegistry extends ForwardingRegistry {
  private readonly local: Registry;

  constructor(
    inner: Registry,
    private readonly rules: ImmutableTags,
  ) {
    super(inner);
    this.local = inner.withoutUpstreams?.() ?? inner;
  }

  override async putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options: PutManifestOptions = {}): Promise<PutManifestResult> {
    if (options.cached) return this.inner.putManifest(name, manifest, digest, tags, options);
    const write: string[] = [];
    const createOnly: string[] = [...(options.createOnly ?? [])];
    for (const tag of tags) {
      const rule = this.rules.ruleFor(name, tag);
      if (!rule) {
        write.push(tag);
        continue;
      }
      const current = await this.local.statManifest(name, tag);
      if (!current) {
        write.push(tag);
        createOnly.push(tag);
      } else if (current.digest !== digest) {
        throw this.moved(name, tag, rule, current.digest, digest);
      }
      // The same digest again (a CI retry): nothing to write, the tag keeps its first push time.
    }
    const { notCreated, ...info } = await this.inner.putManifest(name, manifest, digest, write, { ...options, createOnly });
    for (const tag of notCreated ?? []) {
      // Another push created the tag meanwhile: fine if it is this digest.
      const current = await this.local.statManifest(name, tag);
      const rule = this.rules.ruleFor(name, tag);
      if (current && current.digest !== digest && rule) throw this.moved(name, tag, rule, current.digest, digest);
    }
    return info;
  }

  override async deleteManifest(name: string, reference: string): Promise<boolean> {
    if (parseDigest(reference) === undefined) {
      const rule = this.rules.ruleFor(name, reference);
      if (rule && (await this.local.statManifest(name, reference))) {
        throw refused(`${name}:${reference} is an immutable tag (IMMUTABLE_TAGS rule ${rule.text}); it cannot be deleted`, {
          name,
          tag: reference,
          rule: rule.text,
        });
      }
    } else {
      const hold = await this.holder(name, { manifest: reference });
      if (hold) {
        const how = hold.via === reference ? "points at it" : `reaches it through index ${hold.via}`;
        throw refused(
          `manifest ${reference} cannot be deleted: immutable tag ${name}:${hold.tag} (IMMUTABLE_TAGS rule ${hold.rule.text}) ${how}`,
          { name, digest: reference, tag: hold.tag, rule: hold.rule.text },
        );
      }
    }
    return this.inner.deleteManifest(name, reference);
  }

  override async deleteBlob(name: string, digest: string): Promise<boolean> {
    const hold = await this.holder(name, { blob: digest });
    if (hold) {
      throw refused(
        `blob ${digest} cannot be deleted: manifest ${hold.via} of immutable tag ${name}:${hold.tag} (IMMUTABLE_TAGS rule ${hold.rule.text}) references it`,
        { name, digest, tag: hold.tag, rule: hold.rule.text },
      );
    }
    return this.inner.deleteBlob(name, digest);
  }

  private moved(name: string, tag: string, rule: ImmutableRule, current: string, pushed: string): RegistryError {
    return refused(
      `${name}:${tag} is an immutable tag (IMMUTABLE_TAGS rule ${rule.text}): it points at ${current} and cannot be moved to ${pushed}; push under a new tag`,
      { name, tag, rule: rule.text, digest: current },
    );
  }

  /**
   * The immutable tag reaching a manifest or a blob, if any: the repository's immutable tags (one
   * listing per 1,000 tags), then the manifests they reach through indexes (one read each, only
   * indexes when looking for a manifest). Nothing is read in a repository no rule covers.
   */
  private async holder(name: string, target: { manifest?: string; blob?: string }): Promise<Hold | undefined> {
    if (!this.rules.covers(name)) return undefined;
    const queue: { digest: string; mediaType?: string; tag: string; rule: ImmutableRule }[] = [];
    for await (const record of this.immutableTags(name)) {
      const rule = this.rules.ruleFor(name, record.tag);
      if (!rule) continue;
      if (record.digest === target.manifest) return { tag: record.tag, rule, via: record.digest };
      queue.push({ digest: record.digest, mediaType: record.mediaType, tag: record.tag, rule });
    }
    const seen = new Set<string>();
    while (queue.length > 0) {
      const next = queue.shift()!;
      if (seen.has(next.digest)) continue;
      seen.add(next.digest);
      // Looking for a manifest, only indexes (and manifest lists) can lead to it.
      if (target.blob === undefined) {
        const mediaType = next.mediaType ?? (await this.local.statManifest(name, next.digest))?.mediaType;
        if (!mediaType || !/index|list/.test(mediaType)) continue;
      }
      const content = await this.local.getManifest(name, next.digest);
      if (!content) continue;
      const references = referencesOf(await bytesOf(content.body));
      if (target.blob !== undefined && references.blobs.includes(target.blob)) return { tag: next.tag, rule: next.rule, via: next.digest };
      for (const child of references.manifests) {
        if (child === target.manifest) return { tag: next.tag, rule: next.rule, via: next.digest };
        queue.push({ digest: child, tag: next.tag, rule: next.rule });
      }
    }
    return undefined;
  }

  /** The repository's tags an immutable rule matches, with their digests (and media types when known). */
  private async *immutableTags(name: string): AsyncGenerator<{ tag: string; digest: string; mediaType?: string }> {
    if (this.local.tagRecords) {
      for await (const record of this.local.tagRecords(name)) if (this.rules.ruleFor(name, record.tag)) yield record;
      return;
    }
    // A storage that cannot list tag records: the tag list, then each immutable tag's manifest.
    let last: string | undefined;
    for (;;) {
      const page = await this.local.listTags(name, { n: 1000, ...(last !== undefined ? { last } : {}) });
      if (!page) return;
      for (const tag of page.items) {
        if (!this.rules.ruleFor(name, tag)) continue;
        const info = await this.local.statManifest(name, tag);
        if (info) yield { tag, digest: info.digest, mediaType: info.mediaType };
      }
      if (!page.more || page.items.length === 0) return;
      last = page.items[page.items.length - 1];
    }
  }

  withoutUpstreams(): Registry {
    return this.local === this.inner ? this : new ImmutableRegistry(this.local, this.rules);
  }

  hasPushes(name: string) {
    return this.inner.hasPushes ? this.inner.hasPushes(name) : Promise.resolve(true);
  }
  tagRecords(name: string) {
    if (!this.local.tagRecords) throw new RegistryError("UNSUPPORTED", "this storage cannot tell when tags were pushed");
    return this.local.tagRecords(name);
  }
  announce(name: string, digests: string[]) {
    return this.inner.announce ? this.inner.announce(name, digests) : Promise.resolve({ release: async () => {} });
  }
  collect(name: string, options: CollectOptions) {
    if (!this.inner.collect) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
    return this.inner.collect(name, options);
  }
  collectAll(options: CollectAllOptions) {
    if (!this.inner.collectAll) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
    return this.inner.collectAll(options);
  }
}
