import { digestBytes, parseDigest, toHex } from "../../oci/digest";
import { baseMediaType, MediaType } from "../../oci/media-types";
import type { ParsedManifest } from "../../oci/manifest";
import type { ManifestContent, ManifestInfo, PutManifestOptions, PutManifestResult } from "../registry";
import { CACHED_METADATA, deleteKeys, keys, listAll, PUSHED_METADATA } from "./keys";
import { referencesOf } from "../../oci/manifest";
import type { R2Referrers } from "./referrers";

/**
 * The digest an R2 manifest object holds: our `digest` metadata, else (objects written by
 * serverless-registry) R2's SHA-256 checksum.
 */
export function storedDigest(object: R2Object): string | undefined {
  const meta = object.customMetadata?.digest;
  if (meta) return meta;
  const sha256 = object.checksums?.sha256;
  return sha256 && sha256.byteLength === 32 ? `sha256:${toHex(new Uint8Array(sha256))}` : undefined;
}

/** The media type an R2 manifest object is served under. */
export function storedMediaType(object: R2Object): string {
  return baseMediaType(object.httpMetadata?.contentType) ?? MediaType.OCI_MANIFEST;
}

/** A manifest key holding the same manifest is written again only this long after its last write (R2: one write per key per second). */
const REWRITE_MS = 2000;

/** True when a stored manifest object has the content type and metadata a push would write (but when it was pushed). */
function sameMetadata(object: R2Object, options: R2PutOptions): boolean {
  const { [PUSHED_METADATA]: _, ...wanted } = options.customMetadata ?? {};
  const { [PUSHED_METADATA]: __, ...have } = object.customMetadata ?? {};
  const contentType = (options.httpMetadata as R2HTTPMetadata | undefined)?.contentType;
  return object.httpMetadata?.contentType === contentType && Object.keys(wanted).every((k) => have[k] === wanted[k]) && Object.keys(have).length === Object.keys(wanted).length;
}

/**
 * A read of a key made ahead of the write that needs it: a rejection surfaces when that write
 * awaits it, and is dropped if the write never comes (an earlier write failed).
 */
function early(read: Promise<R2Object | null>): Promise<R2Object | null> {
  read.catch(() => undefined);
  return read;
}

/**
 * Manifests in R2: a full copy under the digest key and under each tag key. One instance serves
 * one request: a digest key `stat` found absent is not read again before a push writes it (the
 * write is conditional on its absence).
 */
export class R2Manifests {
  /** Digest keys `stat` found absent in this request. */
  private readonly absent = new Set<string>();

  constructor(
    private readonly bucket: R2Bucket,
    private readonly referrers: R2Referrers,
  ) {}

  async get(name: string, reference: string): Promise<ManifestContent | null> {
    const object = await this.bucket.get(keys.manifest(name, reference));
    if (!object) return null;
    let digest = storedDigest(object);
    let body = object.body;
    if (!digest) {
      const bytes = new Uint8Array(await object.arrayBuffer());
      digest = await digestBytes(bytes);
      body = new Blob([bytes]).stream();
    }
    return { digest, size: object.size, mediaType: storedMediaType(object), modified: object.uploaded, body };
  }

  async stat(name: string, reference: string): Promise<ManifestInfo | null> {
    const key = keys.manifest(name, reference);
    const object = await this.bucket.head(key);
    if (!object) {
      if (parseDigest(reference)) this.absent.add(key);
      return null;
    }
    const digest = storedDigest(object);
    if (digest) return { digest, size: object.size, mediaType: storedMediaType(object), modified: object.uploaded };
    const full = await this.get(name, reference);
    if (!full) return null;
    await full.body.cancel();
    return { digest: full.digest, size: full.size, mediaType: full.mediaType, ...(full.modified ? { modified: full.modified } : {}) };
  }

  /**
   * Stores a manifest under its digest, then under its tags, each tag key recording when it was
   * pushed (`PUSHED_METADATA`). Tags in `createOnly` are written only if absent (an R2 conditional
   * put); those that existed are answered in `notCreated`.
   */
  async put(name: string, manifest: ParsedManifest, digest: string, tags: string[], options: PutManifestOptions = {}): Promise<PutManifestResult> {
    const { cached = false } = options;
    const parsed = parseDigest(digest);
    const put: R2PutOptions = {
      httpMetadata: { contentType: manifest.mediaType },
      customMetadata: {
        digest,
        hasSubject: manifest.subject ? "true" : "false",
        ...(manifest.subject ? { subjectDigest: manifest.subject.digest } : {}),
        [PUSHED_METADATA]: new Date().toISOString(),
      },
      // R2 verifies the bytes and keeps the checksum serverless-registry reads digests from.
      ...(parsed?.algorithm === "sha256" ? { sha256: parsed.encoded } : {}),
    };
    // What the writes below need to read is read now, alongside the first write: one round
    // trip to R2 for all of them rather than one before each write.
    const tagHeads = new Map(tags.map((tag) => [tag, early(this.bucket.head(keys.manifest(name, tag)))]));
    const marker = early(this.bucket.head(keys.repository(name)));
    // The digest key first: a tag never points at a manifest that is not stored.
    const digestKey = keys.manifest(name, digest);
    // Found absent by `stat` (a fresh push): created if still absent, read again otherwise. A key
    // found present is read again here: a delete meanwhile must not leave tags without it.
    const seen = this.absent.delete(digestKey) ? null : undefined;
    await this.store(digestKey, manifest.bytes, put, seen);
    const createOnly = new Set(options.createOnly ?? []);
    const notCreated: string[] = [];
    await Promise.all(
      tags.map(async (tag) => {
        const key = keys.manifest(name, tag);
        const seen = await tagHeads.get(tag)!;
        if (!createOnly.has(tag)) return void (await this.store(key, manifest.bytes, put, seen));
        // Read first: a conditional write refused is still a write of the key (R2 takes one a second).
        if (seen || !(await this.bucket.put(key, manifest.bytes, { ...put, onlyIf: { etagDoesNotMatch: "*" } }))) notCreated.push(tag);
      }),
    );
    if (manifest.subject) {
      await this.referrers.add(name, manifest.subject.digest, {
        mediaType: manifest.mediaType,
        digest,
        size: manifest.bytes.byteLength,
        ...(manifest.artifactType ? { artifactType: manifest.artifactType } : {}),
        ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
      });
    }
    await this.mark(name, cached, await marker);
    return { digest, size: manifest.bytes.byteLength, mediaType: manifest.mediaType, ...(notCreated.length > 0 ? { notCreated } : {}) };
  }

  /**
   * Writes a manifest key, at most once a second whatever pushes race on it (R2 takes one write of
   * a key per second): created if absent; else written again, over the etag read, unless it holds
   * this very manifest (same digest and metadata) written less than 2 s ago (then its push time
   * stays that of the write 2 s before at most). Pushes of one
   * manifest under several tags, or by several clients at once, or of the same tag again at once,
   * so write a key once; a key's time still moves on with later pushes (Last-Modified, and the
   * grace period of collections, read it). `seen`: the key as this request already read it
   * (null: absent), so it is not read first.
   */
  private async store(key: string, bytes: Uint8Array, options: R2PutOptions, seen?: R2Object | null): Promise<void> {
    let stored = seen === undefined ? await this.bucket.head(key) : seen;
    if (!stored) {
      if (await this.bucket.put(key, bytes, { ...options, onlyIf: { etagDoesNotMatch: "*" } })) return;
      stored = await this.bucket.head(key);
      if (!stored) {
        await this.bucket.put(key, bytes, options);
        return;
      }
    }
    if (sameMetadata(stored, options) && Date.now() - stored.uploaded.getTime() < REWRITE_MS) return;
    // A push that loses the race to another push's write of the key is ordered before it.
    await this.bucket.put(key, bytes, { ...options, onlyIf: { etagMatches: stored.etag } });
  }

  /**
   * Writes the repository's catalog marker: a cached manifest creates it marked as cached only
   * if it is absent (a concurrent push's plain marker wins); a pushed one makes it plain.
   * `marker`: the marker as read when the push began storing (once, as before it was recorded).
   */
  private async mark(name: string, cached: boolean, marker: R2Object | null): Promise<void> {
    const key = keys.repository(name);
    if (cached) {
      if (!marker) await this.bucket.put(key, "", { customMetadata: { [CACHED_METADATA]: "true" }, onlyIf: { etagDoesNotMatch: "*" } });
      return;
    }
    // Written once by the pushes that race to create a repository (a multi-platform image's
    // manifests; R2 takes one write of a key per second): created only if absent, made plain only
    // over the cached marker read. A write that loses found another push's plain marker.
    let current = marker;
    if (!current) {
      if (await this.bucket.put(key, "", { onlyIf: { etagDoesNotMatch: "*" } })) return;
      current = await this.bucket.head(key);
    }
    if (current?.customMetadata?.[CACHED_METADATA] !== undefined) await this.bucket.put(key, "", { onlyIf: { etagMatches: current.etag } });
  }

  /**
   * Deletes a tag, or a digest with every tag that points at it (listing the repository's
   * manifests page by page, so any number of tags goes in one call).
   */
  async delete(name: string, reference: string): Promise<boolean> {
    const key = keys.manifest(name, reference);
    if (!parseDigest(reference)) {
      if (!(await this.bucket.head(key))) return false;
      await this.bucket.delete(key);
      return true;
    }
    const doomed: string[] = [];
    for await (const object of listAll(this.bucket, { prefix: keys.manifestsPrefix(name), include: ["customMetadata"] })) {
      if (object.key === key) continue;
      let digest = storedDigest(object);
      if (!digest) {
        const full = await this.bucket.head(object.key);
        digest = full ? storedDigest(full) : undefined;
      }
      if (digest === reference) doomed.push(object.key);
    }
    const object = await this.bucket.head(key);
    if (!object && doomed.length === 0) return false;
    // Tags first, the digest last: a failure half-way never leaves a tag without its manifest.
    await deleteKeys(this.bucket, doomed);
    const subject = object ? await this.subjectOf(object) : undefined;
    if (subject) await this.referrers.remove(name, subject, reference);
    await this.bucket.delete(key);
    return true;
  }

  /** The subject a stored manifest refers to: from its metadata, else (older objects) its body. */
  private async subjectOf(object: R2Object): Promise<string | undefined> {
    const meta = object.customMetadata ?? {};
    if (meta.subjectDigest) return meta.subjectDigest;
    if (meta.hasSubject === "false") return undefined;
    const full = await this.bucket.get(object.key);
    if (!full) return undefined;
    const subject = referencesOf(new Uint8Array(await full.arrayBuffer())).subject;
    return subject && parseDigest(subject) ? subject : undefined;
  }
}
