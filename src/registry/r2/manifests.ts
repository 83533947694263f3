import { digestBytes, parseDigest, toHex } from "../../oci/digest";
import { baseMediaType, MediaType } from "../../oci/media-types";
import type { ParsedManifest } from "../../oci/manifest";
import type { ManifestContent, ManifestInfo, PutManifestOptions } from "../registry";
import { CACHED_METADATA, deleteKeys, keys, listAll } from "./keys";
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

function storedMediaType(object: R2Object): string {
  return baseMediaType(object.httpMetadata?.contentType) ?? MediaType.OCI_MANIFEST;
}

/** Manifests in R2: a full copy under the digest key and under each tag key. */
export class R2Manifests {
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
    const object = await this.bucket.head(keys.manifest(name, reference));
    if (!object) return null;
    const digest = storedDigest(object);
    if (digest) return { digest, size: object.size, mediaType: storedMediaType(object), modified: object.uploaded };
    const full = await this.get(name, reference);
    if (!full) return null;
    await full.body.cancel();
    return { digest: full.digest, size: full.size, mediaType: full.mediaType, ...(full.modified ? { modified: full.modified } : {}) };
  }

  async put(name: string, manifest: ParsedManifest, digest: string, tags: string[], { cached = false }: PutManifestOptions = {}): Promise<ManifestInfo> {
    const parsed = parseDigest(digest);
    const options: R2PutOptions = {
      httpMetadata: { contentType: manifest.mediaType },
      customMetadata: {
        digest,
        hasSubject: manifest.subject ? "true" : "false",
        ...(manifest.subject ? { subjectDigest: manifest.subject.digest } : {}),
      },
      // R2 verifies the bytes and keeps the checksum serverless-registry reads digests from.
      ...(parsed?.algorithm === "sha256" ? { sha256: parsed.encoded } : {}),
    };
    // The digest key first: a tag never points at a manifest that is not stored.
    await this.bucket.put(keys.manifest(name, digest), manifest.bytes, options);
    await Promise.all(tags.map((tag) => this.bucket.put(keys.manifest(name, tag), manifest.bytes, options)));
    if (manifest.subject) {
      await this.referrers.add(name, manifest.subject.digest, {
        mediaType: manifest.mediaType,
        digest,
        size: manifest.bytes.byteLength,
        ...(manifest.artifactType ? { artifactType: manifest.artifactType } : {}),
        ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
      });
    }
    await this.mark(name, cached);
    return { digest, size: manifest.bytes.byteLength, mediaType: manifest.mediaType };
  }

  /**
   * Writes the repository's catalog marker: a cached manifest creates it marked as cached only
   * if it is absent (a concurrent push's plain marker wins); a pushed one makes it plain. Reads
   * it once, as before this was recorded.
   */
  private async mark(name: string, cached: boolean): Promise<void> {
    const key = keys.repository(name);
    const marker = await this.bucket.head(key);
    if (cached) {
      if (!marker) await this.bucket.put(key, "", { customMetadata: { [CACHED_METADATA]: "true" }, onlyIf: { etagDoesNotMatch: "*" } });
    } else if (!marker || marker.customMetadata?.[CACHED_METADATA] !== undefined) {
      await this.bucket.put(key, "");
    }
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
