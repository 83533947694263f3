import { fixedLength, pump } from "../../streams";
import { deleteKeys, listAll } from "./keys";
import type { ByteRange } from "../registry";

/**
 * An upload's bytes as R2 stores them: a list of segments, each one R2 object, read one after
 * the other. Segment 0 is at the data key itself (`_data/<id>`), segment `i` at `_data/<id>/<i>`,
 * so a blob that arrived in one piece is one plain object, which R2 reads fastest, and the data key
 * stays the one name garbage collection, tombstones and pointers speak of. A segment may itself be
 * a multipart object (a body of unknown length, cut into parts).
 *
 * @example
 * segmentKey("_data/abc", 0); // "_data/abc"
 * segmentKey("_data/abc", 2); // "_data/abc/2"
 */
export function segmentKey(dataKey: string, index: number): string {
  return index === 0 ? dataKey : `${dataKey}/${index}`;
}

/**
 * A data key of its own for one request of a session whose data key is `dataKey`:
 * `_data/<id>.<random>`, so that requests racing on the session never write the same key. The
 * sweep of orphans counts it as the session's while the session is open (see {@link baseDataKey}).
 *
 * @example
 * requestDataKey("_data/abc"); // "_data/abc.5f3e9c1a"
 */
export function requestDataKey(dataKey: string): string {
  return `${baseDataKey(dataKey)}.${crypto.randomUUID().slice(0, 8)}`;
}

/** The session data key a request's data key was made from (`_data/<id>.<random>` → `_data/<id>`). */
export function baseDataKey(dataKey: string): string {
  const dot = dataKey.indexOf(".", "_data/".length);
  return dot < 0 ? dataKey : dataKey.slice(0, dot);
}

/** The data key a segment key belongs to (`_data/<id>/<i>` → `_data/<id>`). */
export function dataKeyOf(key: string): string {
  const parts = key.split("/");
  return parts.length > 2 ? parts.slice(0, 2).join("/") : key;
}

/** Where each segment starts and ends, for reading a range across segment boundaries. */
interface Slice {
  index: number;
  /** Offset within the segment. */
  offset: number;
  length: number;
}

/** The parts of each segment that `range` (inclusive) covers. */
export function slicesOf(sizes: readonly number[], range: ByteRange): Slice[] {
  const slices: Slice[] = [];
  let start = 0;
  for (let index = 0; index < sizes.length; index++) {
    const size = sizes[index]!;
    const end = start + size - 1;
    if (size > 0 && end >= range.start && start <= range.end) {
      const from = Math.max(range.start, start);
      const to = Math.min(range.end, end);
      slices.push({ index, offset: from - start, length: to - from + 1 });
    }
    start += size;
  }
  return slices;
}

/**
 * Streams the bytes of `range` (default: all) of a segmented blob. One segment is returned as R2
 * gives it; several are piped, one after the other, into a stream of known length. Null when
 * a single segment is missing; a later segment missing breaks the stream off.
 *
 * @example
 * const body = await readSegments(bucket, "_data/abc", [16 << 20, 4 << 20], { start: 0, end: (20 << 20) - 1 });
 */
export async function readSegments(
  bucket: R2Bucket,
  dataKey: string,
  sizes: readonly number[],
  range: ByteRange,
): Promise<ReadableStream<Uint8Array> | null> {
  const slices = slicesOf(sizes, range);
  const open = (slice: Slice) => {
    const whole = slice.offset === 0 && slice.length === sizes[slice.index];
    return bucket.get(segmentKey(dataKey, slice.index), whole ? {} : { range: { offset: slice.offset, length: slice.length } });
  };
  if (slices.length === 1) return (await open(slices[0]!))?.body ?? null;
  // Each segment is opened once the previous one is through (the local R2 simulator fails when
  // a stream it was given to store is fed from a read opened before that write began).
  const { readable, done } = fixedLength(range.end - range.start + 1, async (writer) => {
    for (const slice of slices) {
      const object = await open(slice);
      if (!object) throw new Error(`segment ${slice.index} of ${dataKey} is missing`);
      await pump(object.body, writer);
    }
  });
  done.catch((error: unknown) => console.error(`r2-registry: reading ${dataKey} broke off:`, error));
  return readable;
}

/**
 * Deletes a data key and every segment under it (at most 1,000 keys a call, R2's limit).
 *
 * @example
 * await deleteData(bucket, "_data/abc");
 */
export async function deleteData(bucket: R2Bucket, dataKey: string): Promise<void> {
  const doomed: string[] = [];
  for await (const object of listAll(bucket, { prefix: `${dataKey}/`, flat: true })) doomed.push(object.key);
  // The data key last: while it stands, its segments do too.
  await deleteKeys(bucket, [...doomed, dataKey]);
}
