import { RegistryError } from "../../errors";
import { isTooManyWrites } from "./limited";

/**
 * Waits before the second and third try of a call R2 answered with 429 (error 10058: another write
 * of the same key within a second): three tries over about 1.5 s, the last past R2's one-second
 * window, each delay jittered so that racing requests spread out.
 */
export const DELAYS_MS = [400, 1100];

/** A delay of about `ms` (±25 %), so that requests racing on one key spread out. */
export function jittered(ms: number): number {
  return ms * (0.75 + Math.random() / 2);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The answer once R2 keeps refusing writes of a key: 503 `UNAVAILABLE` with `Retry-After`, never
 * a 500. Its own class, so a caller that knows the key's content (a blob under its digest) can
 * tell that another request is storing the same thing.
 */
export class StorageBusy extends RegistryError {
  constructor(action: string) {
    super("UNAVAILABLE", `the registry's storage is busy with other writes of the same object (${action}); retry in a second`, {
      headers: { "Retry-After": "1" },
    });
  }
}

function busy(action: string): RegistryError {
  return new StorageBusy(action);
}

/** Options for tests: the delays between tries. */
export interface RetryOptions {
  delaysMs?: readonly number[];
}

/**
 * Runs an R2 call, trying again after a 429 when it can be replayed (its body is not a stream
 * already handed over); a 429 that persists becomes a 503 the client retries.
 */
async function attempt<T>(action: string, replayable: boolean, delays: readonly number[], run: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await run();
    } catch (error) {
      if (!isTooManyWrites(error)) throw error;
      if (!replayable || tries >= delays.length) throw busy(action);
      await sleep(jittered(delays[tries]!));
    }
  }
}

class RetryingMultipart implements R2MultipartUpload {
  constructor(
    private readonly inner: R2MultipartUpload,
    private readonly delays: readonly number[],
  ) {}

  get key(): string {
    return this.inner.key;
  }

  get uploadId(): string {
    return this.inner.uploadId;
  }

  uploadPart(partNumber: number, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | Blob, options?: R2UploadPartOptions): Promise<R2UploadedPart> {
    return attempt("uploadPart", !(value instanceof ReadableStream), this.delays, () => this.inner.uploadPart(partNumber, value, options));
  }

  abort(): Promise<void> {
    return attempt("abort", true, this.delays, () => this.inner.abort());
  }

  complete(uploadedParts: R2UploadedPart[]): Promise<R2Object> {
    return attempt("complete", true, this.delays, () => this.inner.complete(uploadedParts));
  }
}

class RetryingBucket implements R2Bucket {
  constructor(
    readonly inner: R2Bucket,
    private readonly delays: readonly number[],
  ) {}

  head(key: string): Promise<R2Object | null> {
    return attempt("head", true, this.delays, () => this.inner.head(key));
  }

  get(key: string, options: R2GetOptions & { onlyIf: R2Conditional | Headers }): Promise<R2ObjectBody | R2Object | null>;
  get(key: string, options?: R2GetOptions): Promise<R2ObjectBody | null>;
  get(key: string, options?: R2GetOptions): Promise<R2ObjectBody | R2Object | null> {
    return attempt("get", true, this.delays, () => this.inner.get(key, options));
  }

  put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions & { onlyIf: R2Conditional | Headers }): Promise<R2Object | null>;
  put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions): Promise<R2Object>;
  put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions): Promise<R2Object | null> {
    return attempt("put", !(value instanceof ReadableStream), this.delays, () => this.inner.put(key, value, options));
  }

  async createMultipartUpload(key: string, options?: R2MultipartOptions): Promise<R2MultipartUpload> {
    return new RetryingMultipart(await attempt("createMultipartUpload", true, this.delays, () => this.inner.createMultipartUpload(key, options)), this.delays);
  }

  resumeMultipartUpload(key: string, uploadId: string): R2MultipartUpload {
    return new RetryingMultipart(this.inner.resumeMultipartUpload(key, uploadId), this.delays);
  }

  delete(keys: string | string[]): Promise<void> {
    return attempt("delete", true, this.delays, () => this.inner.delete(keys));
  }

  list(options?: R2ListOptions): Promise<R2Objects> {
    return attempt("list", true, this.delays, () => this.inner.list(options));
  }
}

/**
 * The bucket under the retrying layer, for a caller that handles R2's 429 itself (e.g. to answer
 * at once when it means another request holds a key).
 *
 * @example
 * const direct = unretried(bucket);
 */
export function unretried(bucket: R2Bucket): R2Bucket {
  return bucket instanceof RetryingBucket ? bucket.inner : bucket;
}

/**
 * Wraps an R2 binding so that R2's 429 for writes of one key (error 10058, "1 write per second
 * per key", https://developers.cloudflare.com/r2/platform/limits/) never reaches a client as a
 * 500: the call is tried again after a backoff (three tries over about 1.5 s), and if R2 still
 * refuses, or the call cannot be replayed because its body was a stream, it throws a
 * {@link RegistryError} `UNAVAILABLE` (503 with `Retry-After: 1`). Always on, in one place, so no
 * route has to handle it.
 *
 * @example
 * const bucket = retrying(env.REGISTRY);
 * await bucket.put("_repositories/app", "", { onlyIf: { etagDoesNotMatch: "*" } });
 */
export function retrying(bucket: R2Bucket, options: RetryOptions = {}): R2Bucket {
  return new RetryingBucket(bucket, options.delaysMs ?? DELAYS_MS);
}
