import { isTag } from "../../oci/names";
import { keys, lastSegment } from "./keys";

/** What to list of a repository's tag keys. */
export interface TagKeyListing {
  /** Start after this tag (exclusive). */
  after?: string;
  /** Metadata to list with each key. */
  include?: R2ListOptions["include"];
  /** How many more keys the caller wants at most, asked before each listing (default 1,000). */
  wanted?: () => number;
}

/**
 * A repository's tag keys in lexical order, with what `include` asks for: R2 listings of up to
 * 1,000 keys (fewer when `wanted` says so), and one more after the block of digest keys, which it
 * jumps over (`sha256:…` sort in one block among the tags, and no tag contains ":"). Keys that
 * are not valid tags are skipped.
 *
 * @example
 * for await (const object of tagKeys(bucket, "team/app", { include: ["customMetadata"] })) console.log(lastSegment(object.key));
 */
export async function* tagKeys(bucket: R2Bucket, name: string, { after, include, wanted }: TagKeyListing = {}): AsyncGenerator<R2Object> {
  const prefix = keys.manifestsPrefix(name);
  let startAfter = after !== undefined ? prefix + after : undefined;
  let cursor: string | undefined;
  for (;;) {
    const page = await bucket.list({
      prefix,
      delimiter: "/",
      limit: Math.max(1, Math.min(1000, wanted?.() ?? 1000)),
      ...(include ? { include } : {}),
      ...(cursor ? { cursor } : startAfter ? { startAfter } : {}),
    });
    let jumpTo: string | undefined;
    for (const object of page.objects) {
      const tag = lastSegment(object.key);
      const colon = tag.indexOf(":");
      if (colon >= 0) {
        // ";" is the character after ":": the listing goes on after the whole block.
        jumpTo = `${prefix}${tag.slice(0, colon)};`;
        break;
      }
      if (isTag(tag)) yield object;
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
