import type { TagRecord } from "../registry";
import { lastSegment, PUSHED_METADATA } from "./keys";
import { storedDigest, storedMediaType, type R2Manifests } from "./manifests";
import { tagKeys } from "./tag-keys";

/**
 * Every tag of a repository with its digest, media type and push time, in lexical order: R2
 * listings of 1,000 tags ({@link tagKeys}), plus a read for each tag an
 * older version or serverless-registry stored without a `digest` in its metadata. The push time
 * is the tag key's `PUSHED_METADATA`, else (a tag serverless-registry wrote) its upload time.
 *
 * @example
 * for await (const { tag, digest, pushed } of tagRecords(bucket, manifests, "team/app")) console.log(tag, digest, pushed);
 */
export async function* tagRecords(bucket: R2Bucket, manifests: R2Manifests, name: string): AsyncGenerator<TagRecord> {
  for await (const object of tagKeys(bucket, name, { include: ["customMetadata", "httpMetadata"] })) {
    const tag = lastSegment(object.key);
    const digest = storedDigest(object) ?? (await manifests.stat(name, tag))?.digest;
    if (!digest) continue;
    const recorded = Date.parse(object.customMetadata?.[PUSHED_METADATA] ?? "");
    yield { tag, digest, mediaType: storedMediaType(object), pushed: Number.isNaN(recorded) ? object.uploaded : new Date(recorded) };
  }
}
