import { MAX_DIGEST_LENGTH, parseDigest } from "../../oci/digest";
import type { Page, ReferrerDescriptor, ReferrersRequest } from "../registry";
import { keys, listAll } from "./keys";

/** Descriptors up to this size also ride in the index object's metadata (R2 allows 2 KiB). */
const METADATA_LIMIT = 1500;

/** Validates a stored descriptor (entries written by serverless-registry included). */
export function readDescriptor(text: string, key: string): ReferrerDescriptor | undefined {
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof d !== "object" || d === null) return undefined;
  const digest = d.digest;
  if (typeof d.mediaType !== "string" || typeof digest !== "string" || !parseDigest(digest)) return undefined;
  if (!key.endsWith(`/${digest}`)) return undefined;
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) return undefined;
  if (d.artifactType !== undefined && typeof d.artifactType !== "string") return undefined;
  const annotations = d.annotations;
  if (annotations !== undefined) {
    if (typeof annotations !== "object" || annotations === null || Array.isArray(annotations)) return undefined;
    if (!Object.values(annotations).every((v) => typeof v === "string")) return undefined;
  }
  return {
    mediaType: d.mediaType,
    digest,
    size: d.size,
    ...(typeof d.artifactType === "string" && d.artifactType ? { artifactType: d.artifactType } : {}),
    ...(annotations ? { annotations: annotations as Record<string, string> } : {}),
  };
}

/**
 * The referrers index: `<name>/_referrers/<subject>/<referrer>` holds the referrer's descriptor
 * (serverless-registry's layout), copied into custom metadata when small so a listing needs no
 * per-entry read.
 */
export class R2Referrers {
  constructor(private readonly bucket: R2Bucket) {}

  async add(name: string, subject: string, descriptor: ReferrerDescriptor): Promise<void> {
    const json = JSON.stringify(descriptor);
    await this.bucket.put(keys.referrer(name, subject, descriptor.digest), json, {
      httpMetadata: { contentType: "application/json" },
      customMetadata: json.length <= METADATA_LIMIT ? { descriptor: json } : {},
    });
  }

  async remove(name: string, subject: string, referrer: string): Promise<void> {
    await this.bucket.delete(keys.referrer(name, subject, referrer));
  }

  async list(
    name: string,
    subject: string,
    { n, last, artifactType }: ReferrersRequest,
  ): Promise<Page<ReferrerDescriptor>> {
    const prefix = keys.referrersPrefix(name, subject);
    const items: ReferrerDescriptor[] = [];
    if (n === 0) return { items, more: false };
    for await (const object of listAll(this.bucket, {
      prefix,
      // Cut to a digest's length (R2 keys are at most 1,024 bytes): no digest sorts between the two.
      startAfter: last ? prefix + last.slice(0, MAX_DIGEST_LENGTH) : undefined,
      include: ["customMetadata"],
    })) {
      let text = object.customMetadata?.descriptor;
      if (text === undefined) {
        const full = await this.bucket.get(object.key);
        if (!full) continue;
        text = await full.text();
      }
      const descriptor = readDescriptor(text, object.key);
      if (!descriptor) continue;
      if (artifactType !== undefined && descriptor.artifactType !== artifactType) continue;
      items.push(descriptor);
      if (items.length > n) break;
    }
    return { items: items.slice(0, n), more: items.length > n };
  }
}
