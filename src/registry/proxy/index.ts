import { parseDigest, type VerifiableAlgorithm } from "../../oci/digest";
import type { ParsedManifest } from "../../oci/manifest";
import { isTag } from "../../oci/names";
import { ForwardingRegistry } from "../forwarding";
import type {
  BlobContent,
  BlobInfo,
  ManifestContent,
  ManifestInfo,
  Page,
  PageRequest,
  PutManifestOptions,
  ByteRange,
  RangeRequest,
  Registry,
} from "../registry";
import { copyTee, type CopyTee } from "./tee";
import { DEFAULT_COPY_LIMITS, guardCopy, notCopied, type CopyLimits } from "./copy";
import { RegistryError } from "../../errors";
import { sliceStream } from "../../streams";
import { resolveRange } from "../r2/blobs";
import { keys } from "../r2/keys";
import { UpstreamError, type Upstream } from "./upstream";
import { upstreamFailure, upstreamsFor } from "./routing";
import { readManifest, type Fetched } from "./manifest";

export { Upstream, clearUpstreamTokens, type UpstreamConfig } from "./upstream";
export { parseRegistries, type PullThroughConfig } from "./config";

/** What the pull-through wrapper needs besides the local registry and the upstreams. */
export interface ProxyOptions {
  /** Runs work after the response (ExecutionContext.waitUntil): blob copies into the cache. */
  waitUntil(promise: Promise<unknown>): void;
  /** The bucket, for the markers recording when a cached tag was last checked upstream. */
  bucket?: R2Bucket;
  /** Default seconds after which a tag cached from an upstream is checked again; none: never. */
  tagTtl?: number;
  /** When blobs are copied into R2 and for how long (see {@link CopyLimits}); defaults otherwise. */
  copy?: Partial<CopyLimits>;
}

/** Marker of a tag cached from an upstream: which upstream; its `uploaded` time is the last check. */
const tagMarkerKey = keys.pullThroughTag;

/** The `Range` header value of a range request. */
function rangeHeader(range: RangeRequest): string {
  if ("suffix" in range) return `bytes=-${range.suffix}`;
  return `bytes=${range.offset}-${range.length === undefined ? "" : range.offset + range.length - 1}`;
}

/** `Content-Range: bytes a-b/size` of a 206 answer, or undefined when it is not that. */
function parseServedRange(header: string | null): { start: number; end: number; size: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header?.trim() ?? "");
  if (!match) return undefined;
  const [start, end, size] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return start <= end && end < size ? { start, end, size } : undefined;
}

/** Blob copies in flight in this isolate, so concurrent pulls of one blob store it once. */
const copying = new Map<string, Promise<void>>();

function log(upstream: Upstream, what: string, error: unknown): void {
  console.warn(`r2-registry: upstream ${upstream.config.registry}: ${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function verifiable(digest: string): VerifiableAlgorithm | undefined {
  const algorithm = parseDigest(digest)?.algorithm;
  return algorithm === "sha256" || algorithm === "sha512" ? algorithm : undefined;
}

/** How the upstreams are asked for one thing. */
interface Ask {
  /** For logs and the client's error message, e.g. `GET manifest team/app:v1`. */
  what: string;
  /**
   * When an upstream fails: fail the request (the default), or answer "not found" — for a HEAD of
   * a digest, which is what a push asks before uploading (a push never depends on an upstream).
   */
  onError?: "fail" | "miss";
  /** Whether the repository holds pushes, when the caller already knows (saves the R2 read). */
  pushed?: boolean;
}

/**
 * Pull-through cache: a {@link Registry} that answers from the local registry and, on a miss of
 * a manifest, a blob or a tag list, asks the upstreams that may fill the repository (see
 * {@link upstreamsFor}: namespaces; and none but `fill_local` ones for a repository holding
 * pushes), in order. Only a 404 moves on to the next upstream: one that fails, is slow or
 * answers garbage fails the request with a 502/504 naming it, so a private upstream that is down
 * never lets a public one answer for its names. Manifests are verified against their digest and
 * stored under the tag and the digest; whole blobs of known length are streamed to the client
 * while a copy goes into the local registry (published only once its digest verifies, and only
 * within the platform's time: see `copy.ts`); ranges and blobs of unknown length are passed
 * through uncopied. Writes go to the local registry only.
 *
 * @example
 * const registry = new ProxyRegistry(new R2Registry(env.REGISTRY), [new Upstream(config)], { waitUntil: (p) => ctx.waitUntil(p) });
 */
export class ProxyRegistry extends ForwardingRegistry {
  private readonly copyLimits: CopyLimits;

  constructor(
    local: Registry,
    private readonly upstreams: Upstream[],
    private readonly options: ProxyOptions,
  ) {
    // Everything not overridden here (uploads, deletes, the catalog, referrers) is local.
    super(local);
    this.copyLimits = { ...DEFAULT_COPY_LIMITS, ...options.copy };
  }

  /**
   * The upstreams that may fill `name`: routed by namespace, and only `fill_local` ones when the
   * repository holds pushes (one R2 read, skipped when no routed upstream would be left out).
   */
  private async candidates(name: string, pushed?: boolean): Promise<Upstream[]> {
    const routed = upstreamsFor(this.upstreams, name);
    if (routed.every((u) => u.config.fillLocal)) return routed;
    const hasPushes = pushed ?? (this.inner.hasPushes ? await this.inner.hasPushes(name) : true);
    return hasPushes ? routed.filter((u) => u.config.fillLocal) : routed;
  }

  /**
   * Asks the candidates in order until one has it (`attempt` answers `null` for a 404). Anything
   * else an upstream does ends the search: see {@link Ask.onError}.
   */
  private async ask<T>(name: string, how: Ask, attempt: (upstream: Upstream) => Promise<T | null>): Promise<T | null> {
    for (const upstream of await this.candidates(name, how.pushed)) {
      let result: T | null;
      try {
        result = await attempt(upstream);
      } catch (error) {
        if (error instanceof RegistryError) throw error; // the client's (a range beyond the blob)
        log(upstream, how.what, error);
        if (how.onError === "miss") return null;
        throw upstreamFailure(upstream, how.what, error);
      }
      if (result !== null) return result;
    }
    return null;
  }

  override async statBlob(name: string, digest: string): Promise<BlobInfo | null> {
    const local = await this.inner.statBlob(name, digest);
    if (local) return local;
    return this.ask(name, { what: `HEAD blob ${name}@${digest}`, onError: "miss" }, async (upstream) => {
      const response = await upstream.blob(name, digest, "HEAD");
      if (!response) return null;
      const size = Number(response.headers.get("Content-Length") ?? NaN);
      if (!Number.isSafeInteger(size) || size < 0) throw new UpstreamError("HEAD blob without a Content-Length");
      return { digest, size };
    });
  }

  override async getBlob(name: string, digest: string, range?: RangeRequest): Promise<BlobContent | null> {
    const local = await this.inner.getBlob(name, digest, range);
    if (local) return local;
    return this.ask(name, { what: `GET blob ${name}@${digest}` }, (upstream) => this.blobFrom(upstream, name, digest, range));
  }

  private async blobFrom(upstream: Upstream, name: string, digest: string, range: RangeRequest | undefined): Promise<BlobContent | null> {
    const response = await upstream.blob(name, digest, "GET", range ? rangeHeader(range) : undefined);
    if (!response) return null;
    if (!response.body) throw new UpstreamError("blob answer without a body");
    const declared = Number(response.headers.get("Content-Length") ?? NaN);
    const size = Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined;
    if (range) return this.rangeFrom(response, response.body, digest, range, size);
    // The whole blob: its bytes flow to the client as they arrive, and a copy goes into the cache
    // when it can finish within the platform's time (verified by R2 as it is written).
    const key = `${name}@${digest}`;
    const skip = copying.has(key) ? "another pull is copying it" : notCopied({ size, range: false, verifiable: verifiable(digest) !== undefined }, this.copyLimits);
    if (skip !== undefined || size === undefined) {
      if (size !== undefined && size > this.copyLimits.maxSize) console.log(`r2-registry: blob ${key} (${size} bytes) is served but not cached: ${skip}`);
      return size === undefined ? { digest, body: response.body } : { digest, size, body: response.body };
    }
    const tee = copyTee(response.body, this.copyLimits.lag);
    this.options.waitUntil(this.copyBlob(name, digest, tee, size, upstream));
    return { digest, size, body: tee.client };
  }

  /**
   * A range is passed through as the upstream answers it, never copied (a later whole pull is):
   * its 206, or the range cut from a whole answer of known length, or, when the upstream sent the
   * whole blob without its length, all of it (a server may answer a range so).
   */
  private async rangeFrom(response: Response, body: ReadableStream<Uint8Array>, digest: string, range: RangeRequest, size: number | undefined): Promise<BlobContent> {
    if (response.status === 206) {
      const served = parseServedRange(response.headers.get("Content-Range"));
      if (served) return { digest, size: served.size, body, range: { start: served.start, end: served.end } };
      await body.cancel();
      throw new UpstreamError(`206 answer with an unusable Content-Range ${JSON.stringify(response.headers.get("Content-Range"))}`);
    }
    if (size === undefined) return { digest, body };
    let wanted: ByteRange;
    try {
      wanted = resolveRange(range, size);
    } catch (error) {
      await body.cancel().catch(() => undefined);
      throw error;
    }
    return { digest, size, body: sliceStream(body, wanted.start, wanted.end), range: wanted };
  }

  /**
   * Stores a blob from an upstream as the client reads it (see {@link guardCopy}: abandoned when
   * the client goes away or time runs out, storing nothing); R2 verifies the digest before the
   * blob is visible.
   */
  private copyBlob(name: string, digest: string, tee: CopyTee, size: number, upstream: Upstream): Promise<void> {
    const key = `${name}@${digest}`;
    const settle = guardCopy(tee, this.copyLimits);
    const work = (async () => {
      try {
        if (await this.inner.statBlob(name, digest)) {
          await tee.copy.cancel();
          return;
        }
        await this.inner.putBlob(name, digest, { body: tee.copy, length: size });
      } catch (error) {
        await tee.copy.cancel().catch(() => {});
        log(upstream, `blob ${name}@${digest} not cached`, error);
      } finally {
        settle();
        copying.delete(key);
      }
    })();
    copying.set(key, work);
    return work;
  }

  override async getManifest(name: string, reference: string): Promise<ManifestContent | null> {
    const local = await this.inner.getManifest(name, reference);
    if (local) {
      if (!(await this.isStale(name, reference, local))) return local;
      const fetched = await this.fetchManifest(name, reference).catch(() => null); // failed: the cached tag
      if (!fetched) return local;
      await local.body.cancel();
      return this.serve(fetched);
    }
    const fetched = await this.fetchManifest(name, reference);
    return fetched ? this.serve(fetched) : null;
  }

  override async statManifest(name: string, reference: string): Promise<ManifestInfo | null> {
    const local = await this.inner.statManifest(name, reference);
    if (local && !(await this.isStale(name, reference, local))) return local;
    // A HEAD fetches the manifest (cached for the GET that follows) so what it reports is verified.
    // A HEAD by digest is what a push asks before uploading: an upstream failing is a miss.
    const byDigest = parseDigest(reference) !== undefined;
    const fetched = local
      ? await this.fetchManifest(name, reference).catch(() => null)
      : await this.fetchManifest(name, reference, byDigest ? "miss" : "fail");
    if (!fetched) return local;
    return { digest: fetched.digest, size: fetched.bytes.byteLength, mediaType: fetched.mediaType };
  }

  private serve(fetched: Fetched): ManifestContent {
    const { bytes } = fetched;
    return {
      digest: fetched.digest,
      size: bytes.byteLength,
      mediaType: fetched.mediaType,
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(bytes);
          controller.close();
        },
      }),
    };
  }

  /**
   * Asks the upstreams for a manifest and stores the first verified answer. A reference that is
   * neither a digest nor a valid tag is never sent upstream.
   */
  private async fetchManifest(name: string, reference: string, onError: "fail" | "miss" = "fail"): Promise<Fetched | null> {
    if (parseDigest(reference) === undefined && !isTag(reference)) return null;
    return this.ask(name, { what: `GET manifest ${name}:${reference}`, onError }, (upstream) => this.manifestFrom(upstream, name, reference));
  }

  private async manifestFrom(upstream: Upstream, name: string, reference: string): Promise<Fetched | null> {
    const fetched = await readManifest(upstream, name, reference);
    if (fetched) await this.cacheManifest(name, reference, fetched);
    return fetched;
  }

  private async cacheManifest(name: string, reference: string, fetched: Fetched): Promise<void> {
    if (!fetched.parsed) return;
    const isTag = parseDigest(reference) === undefined;
    try {
      await this.inner.putManifest(name, fetched.parsed, fetched.digest, isTag ? [reference] : [], { cached: true });
      if (isTag && this.options.bucket) {
        await this.options.bucket.put(tagMarkerKey(name, reference), JSON.stringify({ upstream: fetched.upstream.config.registry, digest: fetched.digest }));
      }
    } catch (error) {
      log(fetched.upstream, `manifest ${name}:${reference} not cached`, error);
    }
  }

  /**
   * True when a cached tag came from an upstream, its time-to-live has passed, the repository may
   * still be filled, and the upstream now has another manifest under it. An upstream that cannot
   * be asked keeps the cached tag.
   */
  private async isStale(name: string, reference: string, local: ManifestInfo): Promise<boolean> {
    const bucket = this.options.bucket;
    if (!bucket || parseDigest(reference) !== undefined) return false;
    const configured = this.options.tagTtl !== undefined || this.upstreams.some((u) => u.config.tagTtl !== undefined);
    if (!configured) return false;
    const marker = await bucket.get(tagMarkerKey(name, reference));
    if (!marker) return false; // pushed here, not pulled through
    let from: string | undefined;
    try {
      from = (JSON.parse(await marker.text()) as { upstream?: string }).upstream;
    } catch {
      from = undefined;
    }
    const routed = upstreamsFor(this.upstreams, name);
    const origin = routed.find((u) => u.config.registry === from);
    const ttl = origin?.config.tagTtl ?? this.options.tagTtl;
    if (ttl === undefined || Date.now() - marker.uploaded.getTime() < ttl * 1000) return false;
    const candidates = await this.candidates(name);
    const order = origin && candidates.includes(origin) ? [origin, ...candidates.filter((u) => u !== origin)] : candidates;
    for (const upstream of order) {
      try {
        const response = await upstream.manifest(name, reference, "HEAD");
        if (!response) continue; // 404: the next may have it
        const digest = response.headers.get("Docker-Content-Digest")?.trim();
        if (digest && digest === local.digest) {
          // Checked again: the marker's time moves, at most once a second (R2 refuses more writes of
          // a key, and a TTL of 0 checks on every pull), by one of the pulls that raced on it.
          if (Date.now() - marker.uploaded.getTime() >= 1000) {
            const record = JSON.stringify({ upstream: upstream.config.registry, digest });
            await bucket.put(tagMarkerKey(name, reference), record, { onlyIf: { etagMatches: marker.etag } });
          }
          return false;
        }
        return true; // moved, or no digest given: fetch and verify
      } catch (error) {
        log(upstream, `HEAD manifest ${name}:${reference}`, error);
        return false;
      }
    }
    return false;
  }

  override async listTags(name: string, page: PageRequest): Promise<Page<string> | null> {
    const local = await this.inner.listTags(name, page);
    if (local) return local;
    // No local list: the repository does not exist here, so it holds no pushes.
    return this.ask(name, { what: `GET tags of ${name}`, pushed: false }, async (upstream) => {
      const tags = await upstream.tags(name, page.n, page.last);
      return tags ? { items: tags.tags.slice(0, page.n), more: tags.more || tags.tags.length > page.n } : null;
    });
  }

  withoutUpstreams(): Registry {
    return this.inner;
  }

  hasPushes(name: string): Promise<boolean> {
    return this.inner.hasPushes ? this.inner.hasPushes(name) : Promise.resolve(true);
  }

  override async putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options?: PutManifestOptions) {
    const info = await this.inner.putManifest(name, manifest, digest, tags, options);
    // A tag pushed here is this registry's own from now on: never re-checked upstream.
    const bucket = this.options.bucket;
    if (bucket && tags.length > 0 && !options?.cached) await bucket.delete(tags.map((tag) => tagMarkerKey(name, tag)));
    return info;
  }
}
