import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import type { BlobContent, BlobInfo, ByteRange, RangeRequest } from "../registry";
import { DATA_METADATA, keys, SEGMENTS_METADATA, SYMLINK_METADATA } from "./keys";
import type { R2Links } from "./links";
import { COPY_PART_SIZE, copyPartSize, putInParts } from "./multipart";
import { StorageBusy } from "./retrying";
import { deleteData, readSegments } from "./segments";
import { withLength } from "../../streams";

/** Symlinks are never chained by this registry; a few hops tolerate odd buckets. */
const MAX_HOPS = 4;
/** Blobs up to this size are copied when mounted, which keeps repositories independent. */
export const COPY_ON_MOUNT_LIMIT = 16 * 1024 * 1024;

/** Where a blob's bytes are, and how the repository holds them. */
export interface Located {
  /** The key holding the bytes. */
  dataKey: string;
  size: number;
  /** The repository whose key holds real bytes (for symlinks to point at); absent for pointers. */
  holder?: string;
  /** How the repository's own key refers to them. */
  kind: "bytes" | "symlink" | "pointer";
  /** For a pointer to segments (see `segments.ts`): the pointer's key, whose body lists them. */
  pointerKey?: string;
}

/**
 * A blob stored; `raced` when another push stored the same blob while this write was refused
 * (R2 takes one write of a key per second): this one was given up, and the stream it was fed may
 * still be read for a moment.
 */
export type Stored = BlobInfo & { raced?: boolean };

/** An upload's bytes: a data key and the sizes of its segments. */
export interface SegmentedData {
  dataKey: string;
  segments: number[];
  size: number;
}

/** How long a blob write that met another write of the same blob waits for that one to land. */
const SETTLE_MS = 2000;
const SETTLE_POLL_MS = 250;

/**
 * The largest blob one R2 `put` takes (4.995 GiB, https://developers.cloudflare.com/r2/platform/limits/;
 * a little less, to be safe). Larger copies are written as multipart objects (`multipart.ts`).
 */
export const MAX_PUT = 4.99 * 1024 * 1024 * 1024;

/** Where R2's limits on one write fall; smaller values let tests take the multipart paths. */
export interface BlobLimits {
  /** Largest single `put` (default {@link MAX_PUT}). */
  maxPut?: number;
  /** Preferred part size of a multipart copy (default `COPY_PART_SIZE`). */
  copyPartSize?: number;
}

/** The body of a pointer to segments: their sizes. */
function pointerBody(segments: readonly number[]): string {
  return JSON.stringify({ segments });
}

/** The segment sizes a pointer object lists. */
async function segmentsOf(object: R2ObjectBody): Promise<number[]> {
  const parsed = JSON.parse(await object.text()) as { segments?: unknown };
  if (!Array.isArray(parsed.segments) || !parsed.segments.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new Error(`pointer ${object.key} lists no segments`);
  }
  return parsed.segments as number[];
}

/** Where a symlink object points: `<source repo>/blobs/<digest>`. */
function symlinkSource(object: R2Object): string | undefined {
  return object.customMetadata?.[SYMLINK_METADATA];
}

/** The repository a blob key belongs to. */
function repositoryOf(key: string, digest: string): string {
  return key.slice(0, key.length - `/blobs/${digest}`.length);
}

/** How a blob key holds its blob, from the key's metadata (a listing's or a head's). */
export function holding(object: R2Object, name: string, digest: string): { kind: Located["kind"]; dataKey: string } {
  const data = object.customMetadata?.[DATA_METADATA];
  if (data) return { kind: "pointer", dataKey: data };
  const source = symlinkSource(object);
  if (source !== undefined) return { kind: "symlink", dataKey: keys.blob(source, digest) };
  return { kind: "bytes", dataKey: keys.blob(name, digest) };
}

/**
 * Resolves an inclusive byte range against a blob size; throws RANGE_INVALID (416) when it
 * cannot be satisfied.
 */
export function resolveRange(request: RangeRequest, size: number): ByteRange {
  let start: number;
  let end: number;
  if ("suffix" in request) {
    start = Math.max(0, size - request.suffix);
    end = size - 1;
  } else {
    start = request.offset;
    end = request.length === undefined ? size - 1 : Math.min(size - 1, request.offset + request.length - 1);
  }
  if (size === 0 || start >= size || end < start || ("suffix" in request && request.suffix === 0)) {
    throw new RegistryError("RANGE_INVALID", `range not satisfiable for a blob of ${size} bytes`, {
      headers: { "Content-Range": `bytes */${size}` },
    });
  }
  return { start, end };
}

/** True when R2 refused a write because the bytes did not match the checksum given. */
export function isChecksumMismatch(error: unknown): boolean {
  return /checksum|digest|did not match|does not match/i.test(String((error as Error)?.message ?? error));
}

/**
 * Blobs in R2 under `<name>/blobs/<digest>`: bytes, serverless-registry's mount symlinks, or
 * pointers to assembled uploads (see `keys.ts`).
 */
export class R2Blobs {
  private readonly maxPut: number;
  private readonly partSize: number;

  constructor(
    private readonly bucket: R2Bucket,
    private readonly links: R2Links,
    limits: BlobLimits = {},
  ) {
    this.maxPut = limits.maxPut ?? MAX_PUT;
    this.partSize = limits.copyPartSize ?? COPY_PART_SIZE;
  }

  /** True when `size` bytes fit one `put`. */
  fitsOnePut(size: number): boolean {
    return size <= this.maxPut;
  }

  /** Finds a blob's bytes, following symlinks and pointers (pointers cost no extra read). */
  async locate(name: string, digest: string): Promise<Located | null> {
    let key = keys.blob(name, digest);
    let kind: Located["kind"] | undefined;
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const object = await this.bucket.head(key);
      if (!object) return null;
      const data = object.customMetadata?.[DATA_METADATA];
      if (data) {
        const segmented = object.customMetadata?.[SEGMENTS_METADATA] !== undefined;
        return { dataKey: data, size: Number(object.customMetadata?.size ?? 0), kind: kind ?? "pointer", ...(segmented ? { pointerKey: key } : {}) };
      }
      const source = symlinkSource(object);
      if (source === undefined) return { dataKey: key, size: object.size, holder: repositoryOf(key, digest), kind: kind ?? "bytes" };
      kind ??= "symlink";
      const target = keys.blob(source, digest);
      if (target === key) return null;
      key = target;
    }
    return null;
  }

  async stat(name: string, digest: string): Promise<BlobInfo | null> {
    const located = await this.locate(name, digest);
    return located ? { digest, size: located.size } : null;
  }

  async get(name: string, digest: string, range?: RangeRequest): Promise<BlobContent | null> {
    if (range) {
      const located = await this.locate(name, digest);
      if (!located) return null;
      const { start, end } = resolveRange(range, located.size);
      let body: ReadableStream<Uint8Array> | null;
      if (located.pointerKey) {
        const pointer = await this.bucket.get(located.pointerKey);
        body = pointer ? await readSegments(this.bucket, located.dataKey, await segmentsOf(pointer), { start, end }) : null;
      } else {
        body = (await this.bucket.get(located.dataKey, { range: { offset: start, length: end - start + 1 } }))?.body ?? null;
      }
      return body ? { digest, size: located.size, body, range: { start, end } } : null;
    }
    // One read in the common case (the bytes are at the key); more for symlinks and pointers.
    let key = keys.blob(name, digest);
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const object = await this.bucket.get(key);
      if (!object) return null;
      const data = object.customMetadata?.[DATA_METADATA];
      const source = symlinkSource(object);
      if (!data && source === undefined) return { digest, size: object.size, body: object.body };
      if (data && object.customMetadata?.[SEGMENTS_METADATA] !== undefined) {
        const size = Number(object.customMetadata.size ?? 0);
        const segments = await segmentsOf(object);
        const body = size === 0 ? new Response("").body! : await readSegments(this.bucket, data, segments, { start: 0, end: size - 1 });
        return body ? { digest, size, body } : null;
      }
      await object.body.cancel();
      const next = data ?? keys.blob(source!, digest);
      if (next === key) return null;
      key = next;
    }
    return null;
  }

  /**
   * Removes a blob from one repository. Bytes other repositories still use (through symlinks)
   * move to one of them first, and an assembled upload's bytes go once no pointer is left, so no
   * other repository loses anything.
   */
  async delete(name: string, digest: string): Promise<boolean> {
    const key = keys.blob(name, digest);
    const object = await this.bucket.head(key);
    if (!object) return false;
    const held = holding(object, name, digest);
    if (held.kind === "bytes") {
      await this.links.bury(key);
      try {
        await this.handOver(name, digest, object);
        await this.bucket.delete(key);
      } finally {
        await this.links.unbury(key);
      }
      return true;
    }
    await this.bucket.delete(key);
    await this.links.remove(digest, name);
    if (held.kind === "pointer") await this.release(digest, held.dataKey);
    return true;
  }

  /**
   * Deletes an assembled upload's bytes once no repository points at them any more (after a
   * pointer to them was removed). While the index of shared bytes is not yet built (an older
   * bucket), they stay for the sweep of orphans to judge.
   */
  async release(digest: string, dataKey: string): Promise<boolean> {
    if (!(await this.links.backfill())) return false;
    await this.links.bury(dataKey);
    try {
      if ((await this.links.users(digest, { dataKey })).length > 0) return false;
      await deleteData(this.bucket, dataKey);
      return true;
    } finally {
      await this.links.unbury(dataKey);
    }
  }

  /**
   * Gives the bytes at `<name>/blobs/<digest>` to the repositories that symlink to them: a copy,
   * checked against the source's own checksum when it has one; a multipart copy of the same length
   * when it is larger than one `put` takes (serverless-registry stored large blobs as multipart objects).
   */
  private async handOver(name: string, digest: string, object: R2Object): Promise<void> {
    const [heir, ...others] = await this.links.users(digest, { dataKey: object.key, holder: name });
    if (!heir) return;
    const bytes = await this.bucket.get(object.key);
    if (!bytes) return;
    if (this.fitsOnePut(object.size)) {
      const options: R2PutOptions = { httpMetadata: object.httpMetadata };
      const sha256 = object.checksums?.sha256;
      if (sha256) options.sha256 = sha256;
      await this.bucket.put(keys.blob(heir, digest), bytes.body, options);
    } else {
      const partSize = copyPartSize(object.size, this.partSize);
      await putInParts(this.bucket, keys.blob(heir, digest), bytes.body, object.size, { partSize, ...(object.httpMetadata ? { httpMetadata: object.httpMetadata } : {}) });
    }
    await this.links.remove(digest, heir);
    for (const other of others) await this.writeSymlink(other, digest, heir, object.httpMetadata);
  }

  private async writeSymlink(name: string, digest: string, holder: string, httpMetadata?: R2HTTPMetadata): Promise<void> {
    await this.links.add(digest, name);
    await this.bucket.put(keys.blob(name, digest), `${holder}/blobs/${digest}`, {
      ...(httpMetadata ? { httpMetadata } : {}),
      customMetadata: { [SYMLINK_METADATA]: holder },
    });
  }

  /**
   * Makes `from`'s blob available in `name` without uploading it again: small blobs are copied,
   * assembled uploads get another pointer to the same bytes, and larger blobs written by
   * serverless-registry get a symlink in its format (recorded, so deleting the original hands
   * the bytes over instead of losing them).
   */
  async mount(name: string, digest: Digest, from: string): Promise<BlobInfo | null> {
    const source = await this.locate(from, digest.value);
    if (!source) return null;
    const info = { digest: digest.value, size: source.size };
    if (await this.locate(name, digest.value)) return info;
    if (source.holder === undefined || source.size > COPY_ON_MOUNT_LIMIT) {
      let segments: number[] | undefined;
      if (source.pointerKey) {
        const pointer = await this.bucket.get(source.pointerKey);
        if (!pointer) return null;
        segments = await segmentsOf(pointer);
      }
      // Bytes being deleted (by a collection, or their holder's DELETE) are not mounted: the
      // client uploads the blob instead.
      return (await this.share(name, digest.value, { ...source, ...(segments ? { segments } : {}) })) ? info : null;
    }
    const bytes = await this.bucket.get(source.dataKey);
    if (!bytes) return null;
    await this.put(name, digest, bytes.body, source.size);
    return info;
  }

  /**
   * Makes `name` hold a blob whose bytes are stored elsewhere: a pointer to an assembled upload,
   * or a symlink to the repository holding the bytes. False (and nothing written) when those bytes
   * are being deleted.
   */
  async share(name: string, digest: string, source: Pick<Located, "dataKey" | "size" | "holder"> & { segments?: number[] }): Promise<boolean> {
    if (source.holder === undefined) await this.writePointer(name, digest, source.dataKey, source.size, source.segments);
    else await this.writeSymlink(name, digest, source.holder);
    if (!(await this.links.doomed(source.dataKey))) return true;
    await this.bucket.delete(keys.blob(name, digest));
    await this.links.remove(digest, name);
    return false;
  }

  /**
   * A pointer: custom metadata naming the data key and the size; for segments (see
   * `segments.ts`) also their count, and the body lists their sizes. Older pointers name one
   * object holding all the bytes (an R2 multipart object), their body is the data key.
   */
  private async writePointer(name: string, digest: string, dataKey: string, size: number, segments?: number[], { ifAbsent = false } = {}): Promise<boolean> {
    await this.links.add(digest, name);
    const customMetadata: Record<string, string> = { [DATA_METADATA]: dataKey, size: String(size) };
    if (segments) customMetadata[SEGMENTS_METADATA] = String(segments.length);
    const onlyIf: R2PutOptions = ifAbsent ? { onlyIf: { etagDoesNotMatch: "*" } } : {};
    return (await this.bucket.put(keys.blob(name, digest), segments ? pointerBody(segments) : dataKey, { customMetadata, ...onlyIf })) !== null;
  }

  /**
   * Publishes an upload's verified bytes under a digest: a small blob is copied to the blob key
   * (one read on pulls, and R2 checks it once more), a larger one gets a pointer to its segments,
   * no copy. `kept` tells whether the upload's bytes are now in use (else they may go).
   */
  async publish(name: string, digest: Digest, data: SegmentedData): Promise<{ info: BlobInfo; kept: boolean }> {
    const info = { digest: digest.value, size: data.size };
    if (data.size <= COPY_ON_MOUNT_LIMIT) {
      // A blob the repository has already is kept as it is (one read, where a copy writes it again).
      if (await this.locate(name, digest.value)) return { info, kept: false };
      // A copy given up for another push's (`raced`) may still be reading the upload's bytes:
      // they are kept, for the orphan sweep.
      const copied = await this.copyIn(name, digest, data);
      return { info: { digest: copied.digest, size: copied.size }, kept: copied.raced === true };
    }
    // Written only if absent: the repository may have the blob already (another push of the same
    // layer won, or a PUT of this very upload sent twice): that one stays, and these bytes are
    // kept only if it refers to them.
    if (!(await this.writePointer(name, digest.value, data.dataKey, data.size, data.segments, { ifAbsent: true }))) {
      const existing = await this.locate(name, digest.value);
      if (existing) {
        // Bytes at the key itself need no link (writePointer added one).
        if (existing.kind === "bytes") await this.links.remove(digest.value, name);
        return { info, kept: existing.dataKey === data.dataKey };
      }
      await this.writePointer(name, digest.value, data.dataKey, data.size, data.segments);
    }
    if (await this.links.doomed(data.dataKey)) {
      await this.bucket.delete(keys.blob(name, digest.value));
      await this.links.remove(digest.value, name);
      throw new RegistryError("BLOB_UPLOAD_INVALID", "a garbage collection removed this upload's bytes as it finished; upload the blob again");
    }
    return { info, kept: true };
  }

  /**
   * Copies an upload's bytes to the blob key, verified against the digest before they are visible
   * there: by R2 as it stores them (one `put`), or, above what one `put` takes (a sha512 blob over
   * 4.995 GiB), hashed by the Worker as they stream into a multipart object completed only if
   * they match.
   */
  async copyIn(name: string, digest: Digest, data: SegmentedData): Promise<Stored> {
    if (data.size === 0) return this.put(name, digest, new Uint8Array(0), 0);
    const partSize = this.fitsOnePut(data.size) ? 0 : copyPartSize(data.size, this.partSize);
    const body = await readSegments(this.bucket, data.dataKey, data.segments, { start: 0, end: data.size - 1 });
    if (!body) throw new RegistryError("BLOB_UPLOAD_INVALID", "this upload's bytes are gone (removed by a garbage collection?); upload the blob again");
    if (partSize === 0) return this.put(name, digest, body, data.size);
    await putInParts(this.bucket, keys.blob(name, digest.value), body, data.size, { partSize, verify: digest });
    return { digest: digest.value, size: data.size };
  }

  /**
   * Stores bytes under a digest, letting R2 verify them against it (natively: no hashing in the
   * Worker); throws DIGEST_INVALID when they differ (and nothing is stored). A stream is written
   * as it arrives, never buffered, and must have exactly `length` bytes. `ifAbsent`: a blob key
   * that exists already (bytes, a symlink or a pointer) is left as it is. `hashed`: the Worker
   * computed the digest from these very bytes, R2 need not check them again.
   */
  async put(name: string, digest: Digest, value: ReadableStream | ArrayBuffer | Uint8Array, length: number, { ifAbsent = false, hashed = false } = {}): Promise<Stored> {
    const options: R2PutOptions = ifAbsent ? { onlyIf: { etagDoesNotMatch: "*" } } : {};
    if (!hashed && (digest.algorithm === "sha256" || digest.algorithm === "sha512")) options[digest.algorithm] = digest.encoded;
    try {
      const key = keys.blob(name, digest.value);
      const written = await this.bucket.put(key, value instanceof ReadableStream ? withLength(value, length) : value, options);
      // A key that exists but holds no blob (a symlink to bytes deleted since) is replaced.
      if (!written && !(value instanceof ReadableStream) && !(await this.locate(name, digest.value))) {
        const { onlyIf: _, ...again } = options;
        await this.bucket.put(key, value, again);
      }
    } catch (error) {
      if (isChecksumMismatch(error)) {
        throw new RegistryError("DIGEST_INVALID", `the uploaded content does not match digest ${digest.value}`);
      }
      // Another push of the same blob is writing this key (R2 takes one write of a key per
      // second): once it is stored, the repository has these very bytes.
      if (error instanceof StorageBusy && (await this.storedMeanwhile(name, digest.value, length))) return { digest: digest.value, size: length, raced: true };
      throw error;
    }
    return { digest: digest.value, size: length };
  }

  /** Waits a little for a blob another request is storing; true once it is there. */
  private async storedMeanwhile(name: string, digest: string, size: number): Promise<boolean> {
    for (let waited = 0; waited <= SETTLE_MS; waited += SETTLE_POLL_MS) {
      if ((await this.locate(name, digest))?.size === size) return true;
      await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
    }
    return false;
  }
}
