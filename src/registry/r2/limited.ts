/**
 * Cloudflare's limits on R2, enforced on a bucket binding. The local R2 simulator (miniflare)
 * enforces none of them, so code that breaks them passes every local test and fails on Cloudflare;
 * with `R2_LIMITS=enforce` the Worker runs on a bucket that refuses what Cloudflare would refuse,
 * with errors shaped as R2's (`"<operation>: <message> (<code>)"`).
 *
 * Sources:
 * - https://developers.cloudflare.com/r2/platform/limits/ — object key length 1,024 bytes;
 *   maximum upload size 5 GiB single-part (5 MiB less than 5 GiB, so 4.995 GiB), which applies to
 *   one `put` and to one part of a multipart upload; at most 10,000 parts; "maximum concurrent
 *   writes to the same object name (key): 1 per second", a higher rate answered with HTTP 429.
 * - https://developers.cloudflare.com/r2/objects/multipart-objects/ — parts of 5 MiB to 5 GiB, all
 *   but the last the same size, the last no larger than the others.
 * - https://developers.cloudflare.com/r2/api/workers/workers-api-reference/ — `list` returns at
 *   most 1,000 keys (`limit` "defaults to 1000, with a maximum of 1000"); `delete` takes at most
 *   1,000 keys ("The number of keys in the request must be between 1 and 1000 inclusive. (10027)").
 * - https://developers.cloudflare.com/r2/api/error-codes/ — 10020 InvalidObjectName, 100100
 *   EntityTooLarge, 10011 EntityTooSmall, 10048 InvalidPart (non-trailing parts of different
 *   sizes), 10058 TooManyRequests ("multiple concurrent requests to the same object key (limit: 1
 *   write/second per key)").
 * - https://developers.cloudflare.com/workers/platform/limits/#subrequests — a call to R2 through
 *   a binding is a subrequest: 50 per invocation on Workers Free, 10,000 by default on Paid.
 *
 * What counts as a write to a key: a `put` that stores the object, and a multipart `complete`.
 * Deletes do not count: the limits page speaks of writes only, and removing a key just written (a
 * lock released, a temporary object dropped) is what every R2 user does. A conditional `put` whose
 * precondition fails stores nothing and does not count either; any write attempted while another
 * write of the same key is still in flight is refused, as R2 refuses concurrent writes.
 */

/** Bytes in 1 MiB. */
const MiB = 1024 * 1024;

/** The limits this wrapper enforces (see the module comment for where each comes from). */
export const R2_LIMITS = {
  /** Longest object key, in UTF-8 bytes. */
  keyBytes: 1024,
  /** Largest single `put`, and largest part: 5 MiB less than 5 GiB. */
  maxUpload: 5 * 1024 * MiB - 5 * MiB,
  /** Smallest part of a multipart upload, except the last. */
  minPart: 5 * MiB,
  /** Most parts in one multipart upload. */
  maxParts: 10_000,
  /** Most keys one `list` returns. */
  maxList: 1000,
  /** Most keys one `delete` removes. */
  maxDelete: 1000,
  /** Writes to one key are at least this far apart. */
  writeIntervalMs: 1000,
} as const;

/** Subrequests per invocation on Workers Paid (the default budget). */
export const PAID_SUBREQUESTS = 10_000;
/** Subrequests per invocation on Workers Free. */
export const FREE_SUBREQUESTS = 50;

/**
 * How many calls limited buckets refused in this isolate, by kind: what a test checks to show a
 * flow stays within R2's limits (a refused write retried successfully leaves no other trace).
 *
 * @example
 * const before = refusals.writes;
 * await push();
 * expect(refusals.writes).toBe(before);
 */
export const refusals = { writes: 0, other: 0 };

/** R2's error code for a second write to one key within a second. */
export const TOO_MANY_REQUESTS = 10058;
/**
 * The code given to refused arguments (a part number, a `list` limit): R2's error-code page lists
 * none for them, so this one stands for S3's InvalidArgument.
 */
const INVALID_ARGUMENT = 10022;

/** An error shaped as the R2 binding throws them: `"<operation>: <message> (<code>)"`, with `code`. */
export class R2LimitError extends Error {
  constructor(
    readonly action: string,
    readonly code: number,
    message: string,
  ) {
    super(`${action}: ${message} (${code})`);
    this.name = "R2Error";
    if (code === TOO_MANY_REQUESTS) refusals.writes++;
    else refusals.other++;
  }
}

/** Logs what a limited bucket refused (what Cloudflare would), so that `pnpm dev` shows which key. */
function refused(error: Error, key?: string): Error {
  console.warn(`r2-registry: R2_LIMITS refused ${key === undefined ? "a call" : `a call on ${JSON.stringify(key.slice(0, 200))}`}: ${error.message}`);
  return error;
}

/**
 * True when an error is R2's 429 for writes to one key (the wrapper's or R2's own).
 *
 * @example
 * if (isTooManyWrites(error)) await sleep(1000);
 */
export function isTooManyWrites(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (error as { code?: unknown }).code === TOO_MANY_REQUESTS || /\(10058\)\s*$/.test(error.message);
}

/** A key's last stored write, and whether a write is in flight. */
interface WriteLog {
  at: number;
  inflight: boolean;
}

/**
 * Writes per bucket and key, across invocations (the per-key rule holds across requests, as R2's
 * does). Bounded: entries older than the interval are dropped once it grows past {@link LOG_CAP}.
 */
const writeLog = new Map<string, WriteLog>();
const LOG_CAP = 4096;

function prune(now: number): void {
  if (writeLog.size <= LOG_CAP) return;
  for (const [id, entry] of writeLog) {
    if (!entry.inflight && now - entry.at >= R2_LIMITS.writeIntervalMs) writeLog.delete(id);
  }
}

/**
 * The time the per-key rule is measured in: monotonic (`performance.now()`), so a test that moves
 * `Date.now()` (to expire leases) neither refuses writes for the minutes it moved nor lets them
 * through early.
 */
const clock = () => performance.now();

/** Part sizes of multipart uploads made through a limited bucket, by upload id (bounded). */
const partLog = new Map<string, Map<number, number | undefined>>();

function partsOf(uploadId: string): Map<number, number | undefined> {
  let parts = partLog.get(uploadId);
  if (!parts) {
    if (partLog.size >= LOG_CAP) partLog.delete(partLog.keys().next().value!);
    parts = new Map();
    partLog.set(uploadId, parts);
  }
  return parts;
}

const encoder = new TextEncoder();

/** The length of a value R2 is given, when JavaScript can tell it (not for a stream). */
function lengthOf(value: unknown): number | undefined {
  if (value === null || value === undefined) return 0;
  if (typeof value === "string") return encoder.encode(value).byteLength;
  if (value instanceof ArrayBuffer) return value.byteLength;
  if (ArrayBuffer.isView(value)) return value.byteLength;
  if (value instanceof Blob) return value.size;
  return undefined;
}

/** Drops a stream R2 refused, as the binding does, so whoever feeds it learns at once. */
function discard(value: unknown, error: Error): void {
  if (value instanceof ReadableStream) value.cancel(error).catch(() => undefined);
}

/** What a limited bucket is configured with. */
export interface LimitOptions {
  /** Subrequests this invocation may make (default {@link PAID_SUBREQUESTS}). */
  subrequests?: number;
  /** Names the underlying bucket in the per-key write log (default `"REGISTRY"`). */
  scope?: string;
  /** Size limits to enforce instead of R2's (tests lower them rather than allocate gigabytes). */
  limits?: Partial<Pick<typeof R2_LIMITS, "maxUpload" | "minPart">>;
}

type Limits = { -readonly [K in keyof typeof R2_LIMITS]: number };

/** The multipart upload of a limited bucket: parts and completion checked, calls counted. */
class LimitedMultipart implements R2MultipartUpload {
  constructor(
    private readonly inner: R2MultipartUpload,
    private readonly owner: LimitedBucket,
  ) {}

  get key(): string {
    return this.inner.key;
  }

  get uploadId(): string {
    return this.inner.uploadId;
  }

  async uploadPart(partNumber: number, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | Blob, options?: R2UploadPartOptions): Promise<R2UploadedPart> {
    this.owner.spend();
    const length = lengthOf(value);
    let refusal: Error | undefined;
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > this.owner.limits.maxParts) {
      refusal = new R2LimitError("uploadPart", INVALID_ARGUMENT, `Part number must be an integer between 1 and ${this.owner.limits.maxParts}, inclusive.`);
    } else if (length !== undefined && length > this.owner.limits.maxUpload) {
      refusal = new R2LimitError("uploadPart", 100100, "Your proposed upload exceeds the maximum allowed object size.");
    }
    if (refusal) {
      discard(value, refusal);
      throw refused(refusal, this.key);
    }
    const part = await this.inner.uploadPart(partNumber, value, options);
    partsOf(this.uploadId).set(partNumber, length);
    return part;
  }

  async abort(): Promise<void> {
    this.owner.spend();
    await this.inner.abort();
    partLog.delete(this.uploadId);
  }

  async complete(uploadedParts: R2UploadedPart[]): Promise<R2Object> {
    this.owner.spend();
    if (uploadedParts.length > this.owner.limits.maxParts) {
      throw refused(new R2LimitError("complete", INVALID_ARGUMENT, `A multipart upload may have at most ${this.owner.limits.maxParts} parts.`), this.key);
    }
    const known = partLog.get(this.uploadId);
    const sizes = [...uploadedParts].sort((a, b) => a.partNumber - b.partNumber).map((p) => known?.get(p.partNumber));
    const leading = sizes.slice(0, -1);
    const last = sizes.at(-1);
    if (leading.some((size) => size !== undefined && size < this.owner.limits.minPart)) {
      throw refused(new R2LimitError("complete", 10011, "Your proposed upload is smaller than the minimum allowed object size."), this.key);
    }
    const first = leading.find((size) => size !== undefined);
    if (first !== undefined && (leading.some((size) => size !== undefined && size !== first) || (last !== undefined && last > first))) {
      throw refused(new R2LimitError("complete", 10048, "All non-trailing parts must have the same length."), this.key);
    }
    const object = await this.owner.write("complete", this.key, () => this.inner.complete(uploadedParts));
    partLog.delete(this.uploadId);
    return object!;
  }
}

/**
 * The R2 binding with Cloudflare's limits (see the module comment). Counts this invocation's calls
 * against its subrequest budget; the per-key write rule holds across invocations.
 */
class LimitedBucket implements R2Bucket {
  private used = 0;

  constructor(
    private readonly inner: R2Bucket,
    private readonly budget: number,
    private readonly scope: string,
    readonly limits: Limits,
  ) {}

  /** Counts one subrequest; throws as workerd does past the budget. */
  spend(): void {
    this.used += 1;
    if (this.used > this.budget) {
      refusals.other++;
      throw refused(new Error(`Too many API requests by single Worker invocation (R2_LIMITS: ${this.budget} subrequests).`));
    }
  }

  private checkKey(action: string, key: string): void {
    if (encoder.encode(key).byteLength > this.limits.keyBytes) {
      throw refused(new R2LimitError(action, 10020, `The specified object name is not valid: keys are at most ${this.limits.keyBytes} bytes.`), key);
    }
  }

  /**
   * Runs a write of `key`, refused while another write of it is in flight or when the last one
   * was less than a second ago. Only a write that stored something starts a new second.
   */
  async write<T>(action: string, key: string, run: () => Promise<T | null>): Promise<T | null> {
    const id = `${this.scope}\u0000${key}`;
    const now = clock();
    const last = writeLog.get(id);
    if (last && (last.inflight || now - last.at < this.limits.writeIntervalMs)) {
      throw refused(new R2LimitError(action, TOO_MANY_REQUESTS, "Reduce your concurrent request rate for the same object."), key);
    }
    writeLog.delete(id);
    const entry: WriteLog = { at: last?.at ?? -Infinity, inflight: true };
    writeLog.set(id, entry);
    prune(now);
    let stored = false;
    try {
      const result = await run();
      stored = result !== null;
      return result;
    } finally {
      entry.inflight = false;
      if (stored) entry.at = now;
    }
  }

  async head(key: string): Promise<R2Object | null> {
    this.spend();
    this.checkKey("head", key);
    return this.inner.head(key);
  }

  get(key: string, options: R2GetOptions & { onlyIf: R2Conditional | Headers }): Promise<R2ObjectBody | R2Object | null>;
  get(key: string, options?: R2GetOptions): Promise<R2ObjectBody | null>;
  async get(key: string, options?: R2GetOptions): Promise<R2ObjectBody | R2Object | null> {
    this.spend();
    this.checkKey("get", key);
    return this.inner.get(key, options);
  }

  put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions & { onlyIf: R2Conditional | Headers }): Promise<R2Object | null>;
  put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions): Promise<R2Object>;
  async put(key: string, value: ReadableStream | ArrayBuffer | ArrayBufferView | string | null | Blob, options?: R2PutOptions): Promise<R2Object | null> {
    try {
      this.spend();
      this.checkKey("put", key);
      const length = lengthOf(value);
      if (length !== undefined && length > this.limits.maxUpload) {
        throw refused(new R2LimitError("put", 100100, "Your proposed upload exceeds the maximum allowed object size."), key);
      }
      return await this.write("put", key, () => this.inner.put(key, value, options));
    } catch (error) {
      discard(value, error as Error);
      throw error;
    }
  }

  async createMultipartUpload(key: string, options?: R2MultipartOptions): Promise<R2MultipartUpload> {
    this.spend();
    this.checkKey("createMultipartUpload", key);
    return new LimitedMultipart(await this.inner.createMultipartUpload(key, options), this);
  }

  resumeMultipartUpload(key: string, uploadId: string): R2MultipartUpload {
    // No call to R2 (the binding does not check the upload exists).
    this.checkKey("resumeMultipartUpload", key);
    return new LimitedMultipart(this.inner.resumeMultipartUpload(key, uploadId), this);
  }

  async delete(keys: string | string[]): Promise<void> {
    this.spend();
    const list = typeof keys === "string" ? [keys] : keys;
    if (list.length < 1 || list.length > this.limits.maxDelete) {
      throw refused(new R2LimitError("delete", 10027, `The number of keys in the request must be between 1 and ${this.limits.maxDelete} inclusive.`));
    }
    for (const key of list) this.checkKey("delete", key);
    return this.inner.delete(keys);
  }

  async list(options?: R2ListOptions): Promise<R2Objects> {
    this.spend();
    const limit = options?.limit;
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > this.limits.maxList)) {
      throw refused(new R2LimitError("list", INVALID_ARGUMENT, `MaxKeys params must be positive integer <= ${this.limits.maxList}.`), options?.prefix);
    }
    return this.inner.list(options);
  }
}

/**
 * Wraps an R2 binding so that it refuses what Cloudflare's R2 would: keys over 1,024 bytes, a put
 * or part over 4.995 GiB (of a length JavaScript can see), parts outside 5 MiB–4.995 GiB except
 * the last or past 10,000, `list` limits over 1,000, deletes of more than 1,000 keys, a second
 * write of a key within a second (429, error 10058), and more calls in one invocation than the
 * subrequest budget. Make one per invocation: the budget is per invocation.
 *
 * @example
 * const bucket = limited(env.REGISTRY, { subrequests: FREE_SUBREQUESTS });
 * await bucket.put("a", "1");
 * await bucket.put("a", "2"); // throws "put: Reduce your concurrent request rate for the same object. (10058)"
 */
export function limited(bucket: R2Bucket, options: LimitOptions = {}): R2Bucket {
  return new LimitedBucket(bucket, options.subrequests ?? PAID_SUBREQUESTS, options.scope ?? "REGISTRY", { ...R2_LIMITS, ...options.limits });
}
