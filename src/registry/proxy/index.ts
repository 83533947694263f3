import { digestBytes, parseDigest, type VerifiableAlgorithm } from "../../oci/digest";
import { MAX_MANIFEST_SIZE, parseManifest, type ParsedManifest } from "../../oci/manifest";
import { baseMediaType, MediaType } from "../../oci/media-types";
import { isTag } from "../../oci/names";
import type {
  BlobContent,
  BlobInfo,
  Chunk,
  ManifestContent,
  ManifestInfo,
  Page,
  PageRequest,
  ByteRange,
  RangeRequest,
  ReferrersRequest,
  Registry,
} from "../registry";
import { boundedTee } from "./tee";
import { RegistryError } from "../../errors";
import { sliceStream } from "../../streams";
import { resolveRange } from "../r2/blobs";
import type { Upstream } from "./upstream";

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
}

/** Marker of a tag cached from an upstream: which upstream; its `uploaded` time is the last check. */
function tagMarkerKey(name: string, tag: string): string {
  return `_pullthrough/tags/${name}/${tag}`;
}

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

/** Most bytes one side of a blob being streamed and cached may run ahead of the other. */
const TEE_LIMIT = 8 * 1024 * 1024;

/** Blob copies in flight in this isolate, so concurrent pulls of one blob store it once. */
const copying = new Map<string, Promise<void>>();

function log(upstream: Upstream, what: string, error: unknown): void {
  console.warn(`r2-registry: upstream ${upstream.config.registry}: ${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function verifiable(digest: string): VerifiableAlgorithm | undefined {
  const algorithm = parseDigest(digest)?.algorithm;
  return algorithm === "sha256" || algorithm === "sha512" ? algorithm : undefined;
}

function isJsonObject(bytes: Uint8Array): boolean {
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

interface Fetched {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
  parsed?: ParsedManifest;
  upstream: Upstream;
}

/**
 * Pull-through cache: a {@link Registry} that answers from the local registry and, on a miss of
 * a manifest, a blob or a tag list, asks the upstreams in order; the first that has it answers.
 * Manifests are verified against their digest and stored under the tag and the digest; blobs are
 * streamed to the client while a copy goes into the local registry in the background (published
 * only once its digest verifies). Writes go to the local registry only. An upstream that fails,
 * is slow or answers garbage is skipped (and logged), so the client gets the local answer.
 *
 * @example
 * const registry = new ProxyRegistry(new R2Registry(env.REGISTRY), [new Upstream(config)], { waitUntil: (p) => ctx.waitUntil(p) });
 */
export class ProxyRegistry implements Registry {
  constructor(
    private readonly local: Registry,
    private readonly upstreams: Upstream[],
    private readonly options: ProxyOptions,
  ) {}

  async statBlob(name: string, digest: string): Promise<BlobInfo | null> {
    const local = await this.local.statBlob(name, digest);
    if (local) return local;
    for (const upstream of this.upstreams) {
      try {
        const response = await upstream.blob(name, digest, "HEAD");
        if (!response) continue;
        const size = Number(response.headers.get("Content-Length") ?? NaN);
        if (!Number.isSafeInteger(size) || size < 0) throw new Error("HEAD blob without a Content-Length");
        return { digest, size };
      } catch (error) {
        log(upstream, `HEAD blob ${name}@${digest}`, error);
      }
    }
    return null;
  }

  async getBlob(name: string, digest: string, range?: RangeRequest): Promise<BlobContent | null> {
    const local = await this.local.getBlob(name, digest, range);
    if (local) return local;
    const algorithm = verifiable(digest);
    for (const upstream of this.upstreams) {
      try {
        const response = await upstream.blob(name, digest, "GET", range ? rangeHeader(range) : undefined);
        if (!response?.body) continue;
        if (range && response.status === 206) {
          // A range is passed through as the upstream answers it (not cached: a later whole GET is).
          const served = parseServedRange(response.headers.get("Content-Range"));
          if (served) return { digest, size: served.size, body: response.body, range: { start: served.start, end: served.end } };
          await response.body.cancel();
          continue;
        }
        const size = Number(response.headers.get("Content-Length") ?? NaN);
        const known = Number.isSafeInteger(size) && size >= 0;
        const key = `${name}@${digest}`;
        if (!known && range) {
          // A range of a blob of unknown length: copy the whole blob first, then answer from the cache.
          if (!algorithm) throw new Error("cannot verify a blob of this digest algorithm");
          const copy = copying.get(key);
          if (copy) await response.body.cancel();
          await (copy ?? this.copyBlob(name, digest, response.body, known ? size : undefined, upstream));
          const cached = await this.local.getBlob(name, digest, range);
          if (cached) return cached;
          continue;
        }
        // The whole blob (the upstream ignored a Range, if one was asked for): the client's bytes
        // flow as they arrive while a copy goes into the cache, verified as it is written (by R2
        // when the length is known, else by the upload path's SHA-256).
        let wanted: ByteRange | undefined;
        try {
          wanted = range ? resolveRange(range, size) : undefined;
        } catch (error) {
          await response.body.cancel().catch(() => undefined);
          throw error;
        }
        let body = response.body;
        if (algorithm && !copying.has(key)) {
          const [client, cache] = boundedTee(body, TEE_LIMIT);
          body = client;
          this.options.waitUntil(this.copyBlob(name, digest, cache, known ? size : undefined, upstream));
        }
        if (wanted) return { digest, size, body: sliceStream(body, wanted.start, wanted.end), range: wanted };
        return known ? { digest, size, body } : { digest, body };
      } catch (error) {
        if (error instanceof RegistryError) throw error;
        log(upstream, `GET blob ${name}@${digest}`, error);
      }
    }
    return null;
  }

  /** Stores a blob from an upstream; the local registry verifies the digest before publishing. */
  private copyBlob(name: string, digest: string, body: ReadableStream<Uint8Array>, size: number | undefined, upstream: Upstream): Promise<void> {
    const key = `${name}@${digest}`;
    const work = (async () => {
      try {
        if (await this.local.statBlob(name, digest)) {
          await body.cancel();
          return;
        }
        await this.local.putBlob(name, digest, { body, ...(size !== undefined ? { length: size } : {}) });
      } catch (error) {
        await body.cancel().catch(() => {});
        log(upstream, `blob ${name}@${digest} not cached`, error);
      } finally {
        copying.delete(key);
      }
    })();
    copying.set(key, work);
    return work;
  }

  async getManifest(name: string, reference: string): Promise<ManifestContent | null> {
    const local = await this.local.getManifest(name, reference);
    if (local) {
      if (!(await this.isStale(name, reference, local))) return local;
      const fetched = await this.fetchManifest(name, reference);
      if (!fetched) return local;
      await local.body.cancel();
      return this.serve(fetched);
    }
    const fetched = await this.fetchManifest(name, reference);
    return fetched ? this.serve(fetched) : null;
  }

  async statManifest(name: string, reference: string): Promise<ManifestInfo | null> {
    const local = await this.local.statManifest(name, reference);
    if (local && !(await this.isStale(name, reference, local))) return local;
    // A HEAD fetches the manifest (cached for the GET that follows) so what it reports is verified.
    const fetched = await this.fetchManifest(name, reference);
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
  private async fetchManifest(name: string, reference: string): Promise<Fetched | null> {
    const byDigest = parseDigest(reference) !== undefined;
    if (!byDigest && !isTag(reference)) return null;
    for (const upstream of this.upstreams) {
      try {
        const response = await upstream.manifest(name, reference, "GET");
        if (!response) continue;
        const bytes = await upstream.readBytes(response, MAX_MANIFEST_SIZE);
        if (!bytes) throw new Error(`manifest larger than ${MAX_MANIFEST_SIZE} bytes`);
        const expected = byDigest ? reference : response.headers.get("Docker-Content-Digest")?.trim() || undefined;
        let digest: string;
        if (expected) {
          const algorithm = verifiable(expected);
          if (!algorithm) throw new Error(`cannot verify digest ${expected}`);
          digest = await digestBytes(bytes, algorithm);
          if (digest !== expected) throw new Error(`manifest bytes have digest ${digest}, not ${expected}: not used`);
        } else {
          digest = await digestBytes(bytes);
        }
        const contentType = response.headers.get("Content-Type");
        let parsed: ParsedManifest | undefined;
        try {
          parsed = parseManifest(bytes, contentType);
        } catch (error) {
          // Something JSON (e.g. Docker schema 1) is passed on uncached; anything else is garbage.
          if (!isJsonObject(bytes)) throw new Error("the manifest is not a JSON object");
          log(upstream, `manifest ${name}:${reference} is served but not cached`, error);
        }
        const mediaType = parsed?.mediaType ?? baseMediaType(contentType) ?? MediaType.OCI_MANIFEST;
        const fetched: Fetched = { bytes, digest, mediaType, upstream, ...(parsed ? { parsed } : {}) };
        await this.cacheManifest(name, reference, fetched);
        return fetched;
      } catch (error) {
        log(upstream, `GET manifest ${name}:${reference}`, error);
      }
    }
    return null;
  }

  private async cacheManifest(name: string, reference: string, fetched: Fetched): Promise<void> {
    if (!fetched.parsed) return;
    const isTag = parseDigest(reference) === undefined;
    try {
      await this.local.putManifest(name, fetched.parsed, fetched.digest, isTag ? [reference] : []);
      if (isTag && this.options.bucket) {
        await this.options.bucket.put(tagMarkerKey(name, reference), JSON.stringify({ upstream: fetched.upstream.config.registry, digest: fetched.digest }));
      }
    } catch (error) {
      log(fetched.upstream, `manifest ${name}:${reference} not cached`, error);
    }
  }

  /**
   * True when a cached tag came from an upstream, its time-to-live has passed, and the upstream
   * now has another manifest under it. An upstream that cannot be asked keeps the cached tag.
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
    const origin = this.upstreams.find((u) => u.config.registry === from);
    const ttl = origin?.config.tagTtl ?? this.options.tagTtl;
    if (ttl === undefined || Date.now() - marker.uploaded.getTime() < ttl * 1000) return false;
    for (const upstream of origin ? [origin, ...this.upstreams.filter((u) => u !== origin)] : this.upstreams) {
      try {
        const response = await upstream.manifest(name, reference, "HEAD");
        if (!response) continue;
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
      }
    }
    return false;
  }

  async listTags(name: string, page: PageRequest): Promise<Page<string> | null> {
    const local = await this.local.listTags(name, page);
    if (local) return local;
    for (const upstream of this.upstreams) {
      try {
        const tags = await upstream.tags(name, page.n, page.last);
        if (tags) return { items: tags.tags.slice(0, page.n), more: tags.more || tags.tags.length > page.n };
      } catch (error) {
        log(upstream, `tags of ${name}`, error);
      }
    }
    return null;
  }

  withoutUpstreams(): Registry {
    return this.local;
  }

  // Everything else is local.
  deleteBlob(name: string, digest: string) {
    return this.local.deleteBlob(name, digest);
  }
  mountBlob(name: string, digest: string, from: string) {
    return this.local.mountBlob(name, digest, from);
  }
  putBlob(name: string, digest: string, chunk: Chunk) {
    return this.local.putBlob(name, digest, chunk);
  }
  startUpload(name: string) {
    return this.local.startUpload(name);
  }
  getUpload(name: string, id: string) {
    return this.local.getUpload(name, id);
  }
  appendUpload(name: string, id: string, chunk: Chunk) {
    return this.local.appendUpload(name, id, chunk);
  }
  finishUpload(name: string, id: string, digest: string, chunk: Chunk) {
    return this.local.finishUpload(name, id, digest, chunk);
  }
  cancelUpload(name: string, id: string) {
    return this.local.cancelUpload(name, id);
  }
  async putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[]) {
    const info = await this.local.putManifest(name, manifest, digest, tags);
    // A tag pushed here is this registry's own from now on: never re-checked upstream.
    const bucket = this.options.bucket;
    if (bucket && tags.length > 0) await bucket.delete(tags.map((tag) => tagMarkerKey(name, tag)));
    return info;
  }
  deleteManifest(name: string, reference: string) {
    return this.local.deleteManifest(name, reference);
  }
  listRepositories(page: PageRequest) {
    return this.local.listRepositories(page);
  }
  listReferrers(name: string, subject: string, page: ReferrersRequest) {
    return this.local.listReferrers(name, subject, page);
  }
}
