import { isTag } from "../../oci/names";
import type { TagRecord } from "../registry";
import { keys, lastSegment, PUSHED_METADATA } from "./keys";
import { storedDigest, storedMediaType, type R2Manifests } from "./manifests";

/**
 * Every tag of a repository with its digest, media type and push time, in lexical order: one R2
 * listing per 1,000 tags (jumping over the block of digest keys), plus a read for each tag an
 * older version or serverless-registry stored without a `digest` in its metadata. The push time
 * is the tag key's `PUSHED_METADATA`, else (a tag serverless-registry wrote) its upload time.
 *
 * @example
 * for await (const { tag, digest, pushed } of tagRecords(bucket, manifests, "team/app")) console.log(tag, digest, pushed);
 */
export async function* tagRecords(bucket: R2Bucket, manifests: R2Manifests, name: string): AsyncGenerator<TagRecord> {
  const prefix = keys.manifestsPrefix(name);
  let startAfter: string | undefined;
  let cursor: string | undefined;
  for (;;) {
    const page = await bucket.list({
      prefix,
      delimiter: "/",
      limit: 1000,
      include: ["customMetadata", "httpMetadata"],
      ...(cursor ? { cursor } : startAfter ? { startAfter } : {}),
    });
    let jumpTo: string | undefined;
    for (const object of page.objects) {
      const tag = lastSegment(object.key);
      const colon = tag.indexOf(":");
      if (colon >= 0) {
        // Digest keys (`sha256:…`) sort in one block among the tags (no tag contains ":"): jump over it.
        jumpTo = `${prefix}${tag.slice(0, colon)};`;
        break;
      }
      if (!isTag(tag)) continue;
      const digest = storedDigest(object) ?? (await manifests.stat(name, tag))?.digest;
      if (!digest) continue;
      const recorded = Date.parse(object.customMetadata?.[PUSHED_METADATA] ?? "");
      yield { tag, digest, mediaType: storedMediaType(object), pushed: Number.isNaN(recorded) ? object.uploaded : new Date(recorded) };
    }
    if (jumpTo) {
      startAfter = jumpTo;
      cursor = undefined;
    } else if (page.truncated) {
      cursor = page.cursor;
    } else {
      return;
    }
  }
}
