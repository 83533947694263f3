import { RegistryError } from "../../errors";
import type { Digest } from "../../oci/digest";
import type { BlobContent, BlobInfo, ByteRange, RangeRequest } from "../registry";
import { keys, SYMLINK_METADATA } from "./keys";

/** Symlinks are never chained by this registry; a few hops tolerate odd buckets. */
const MAX_HOPS = 4;

/** Where a symlink object points: `<source repo>/blobs/<digest>`. */
function symlinkTarget(object: R2Object, digest: string): string | undefined {
  const source = object.customMetadata?.[SYMLINK_METADATA];
  return source === undefined ? undefined : keys.blob(source, digest);
}

/** The repository a blob key belongs to. */
function repositoryOf(key: string, digest: string): string {
  return key.slice(0, key.length - `/blobs/${digest}`.length);
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

/** Blobs in R2 under `<name>/blobs/<digest>`, including serverless-registry's mount symlinks. */
export class R2Blobs {
  constructor(private readonly bucket: R2Bucket) {}

  /** The object holding a blob's bytes, following symlinks. */
  async locate(name: string, digest: string): Promise<R2Object | null> {
    let key = keys.blob(name, digest);
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const object = await this.bucket.head(key);
      if (!object) return null;
      const target = symlinkTarget(object, digest);
      if (target === undefined) return object;
      if (target === key) return null;
      key = target;
    }
    return null;
  }

  async stat(name: string, digest: string): Promise<BlobInfo | null> {
    const object = await this.locate(name, digest);
    return object ? { digest, size: object.size } : null;
  }

  async get(name: string, digest: string, range?: RangeRequest): Promise<BlobContent | null> {
    if (range) {
      const object = await this.locate(name, digest);
      if (!object) return null;
      const { start, end } = resolveRange(range, object.size);
      const part = await this.bucket.get(object.key, { range: { offset: start, length: end - start + 1 } });
      if (!part) return null;
      return { digest, size: object.size, body: part.body, range: { start, end } };
    }
    let key = keys.blob(name, digest);
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const object = await this.bucket.get(key);
      if (!object) return null;
      const target = symlinkTarget(object, digest);
      if (target === undefined) return { digest, size: object.size, body: object.body };
      await object.body.cancel();
      if (target === key) return null;
      key = target;
    }
    return null;
  }

  async delete(name: string, digest: string): Promise<boolean> {
    const key = keys.blob(name, digest);
    if (!(await this.bucket.head(key))) return false;
    await this.bucket.delete(key);
    return true;
  }

  /**
   * Makes `from`'s blob available in `name` without copying: a symlink object in the original's
   * format pointing at the repository that holds the bytes.
   */
  async mount(name: string, digest: string, from: string): Promise<BlobInfo | null> {
    const source = await this.locate(from, digest);
    if (!source) return null;
    const info = { digest, size: source.size };
    const sourceRepo = repositoryOf(source.key, digest);
    if (sourceRepo === name || (await this.locate(name, digest))) return info;
    await this.bucket.put(keys.blob(name, digest), `${sourceRepo}/blobs/${digest}`, {
      httpMetadata: source.httpMetadata,
      customMetadata: { [SYMLINK_METADATA]: sourceRepo },
    });
    return info;
  }

  /**
   * Stores bytes under a digest, letting R2 verify them against it; throws DIGEST_INVALID when
   * they differ (and nothing is stored).
   */
  async put(name: string, digest: Digest, value: ReadableStream | ArrayBuffer | Uint8Array, length: number): Promise<BlobInfo> {
    const options: R2PutOptions = { [digest.algorithm]: digest.encoded };
    try {
      await this.bucket.put(keys.blob(name, digest.value), value, options);
    } catch (error) {
      if (isChecksumMismatch(error)) {
        throw new RegistryError("DIGEST_INVALID", `the uploaded content does not match digest ${digest.value}`);
      }
      throw error;
    }
    return { digest: digest.value, size: length };
  }
}
