/**
 * Pushes one blob: HEAD (skip it if the repository has it), mount it from another repository
 * when asked (falling back to the session a refused mount opens), else open an upload session and
 * PATCH it in chunks no larger than the registry's OCI-Chunk-Max-Length, then PUT ?digest=.
 *
 * A chunk that fails (no answer, timeout, 5xx, 429, 416, a body that broke off) is not resent
 * from zero: the tool asks the registry where the upload stands (GET on the session) and resumes
 * from that offset, with exponential backoff. Only a session the registry no longer knows (404)
 * starts over. Blobs whose digest was taken on trust (a file name, a config's diff ID) are hashed
 * as they stream and the session is cancelled, before the PUT, if they do not match.
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type Readable } from "node:stream";
import type { BlobSource } from "./image.ts";
import { NetworkError, describeResponse, header, type RegistryClient, type Response } from "./registry-client.ts";

export type BlobOutcome = "uploaded" | "exists" | "mounted";

export interface BlobEvents {
  start(blob: BlobSource): void;
  /** `bytes` of the blob are sent or held by the registry (goes back on a resume). */
  bytes(blob: BlobSource, bytes: number): void;
  retry(blob: BlobSource, message: string): void;
  done(blob: BlobSource, outcome: BlobOutcome): void;
}

export interface UploadOptions {
  /** --chunk-size: an upper bound below the registry's advertised maximum. */
  chunkSize?: number;
  retries: number;
  /** First backoff delay, ms (doubles each time, up to 30 s). */
  retryDelayMs: number;
  mountFrom?: string;
  events: BlobEvents;
  /** Set when another blob failed: stop at the next opportunity. */
  signal: AbortSignal;
}

/** Default chunk when the registry does not say (100 MB: Cloudflare's request body limit on most plans). */
export const DEFAULT_CHUNK = 100_000_000;

/**
 * How long to keep polling a session that answers 416 "busy" before starting the blob over: twice
 * r2-registry's session lease (60 s, renewed while a chunk streams), after which the registry has
 * let go of a session whose writer vanished.
 */
const BUSY_LIMIT_MS = 2 * 60 * 1000;

/** A blob that could not be pushed, with the last error. */
export class BlobPushError extends Error {
  readonly blob: BlobSource;
  constructor(blob: BlobSource, message: string) {
    super(`blob ${blob.digest} (${blob.label}, ${blob.size} bytes) could not be pushed: ${message}`);
    this.name = "BlobPushError";
    this.blob = blob;
  }
}

class Aborted extends Error {
  constructor() {
    super("stopped because another blob failed");
    this.name = "Aborted";
  }
}

/** A failure that retrying will not fix. */
class Fatal extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Bytes the registry holds according to `Range: 0-<last>`. "0-0" is read as empty: registries
 * (distribution too) send it for an empty session as well as for one holding a single byte.
 */
export function heldBytes(res: Response): number | undefined {
  const range = header(res, "range");
  const m = range ? /^(?:bytes[ =])?0-(\d+)$/.exec(range.trim()) : null;
  if (!m) return undefined;
  const last = Number(m[1]);
  return last === 0 ? 0 : last + 1;
}

function retryable(res: Response): boolean {
  return res.status >= 500 || res.status === 429 || res.status === 408;
}

function withQuery(location: string, key: string, value: string): string {
  const hashless = location.split("#")[0]!;
  return `${hashless}${hashless.includes("?") ? "&" : "?"}${key}=${encodeURIComponent(value)}`;
}

export async function pushBlob(client: RegistryClient, blob: BlobSource, opts: UploadOptions): Promise<BlobOutcome> {
  return new BlobUpload(client, blob, opts).run();
}

class BlobUpload {
  private readonly client: RegistryClient;
  private readonly blob: BlobSource;
  private readonly opts: UploadOptions;
  private location = "";
  private chunk = DEFAULT_CHUNK;
  private failures = 0;
  private lastError = "";
  private hash: Hash | undefined;
  private hashedUpTo = 0;
  /** Time spent waiting for a busy session since the last progress. */
  private busyMs = 0;

  constructor(client: RegistryClient, blob: BlobSource, opts: UploadOptions) {
    this.client = client;
    this.blob = blob;
    this.opts = opts;
    if (blob.verify) this.hash = createHash("sha256");
  }

  async run(): Promise<BlobOutcome> {
    this.opts.events.start(this.blob);
    try {
      const outcome = await this.push();
      this.opts.events.done(this.blob, outcome);
      return outcome;
    } catch (err) {
      if (this.location) {
        // Free what the session stored; the next run starts a new one anyway.
        await this.client.request("DELETE", this.location, { timeoutMs: 10_000 }).catch(() => undefined);
      }
      if (err instanceof Aborted) throw err;
      throw new BlobPushError(this.blob, err instanceof Fatal ? err.message : this.lastError || (err as Error).message);
    }
  }

  private check(): void {
    if (this.opts.signal.aborted) throw new Aborted();
  }

  /** Counts a failure; throws once there were more than --retries in a row, else waits. */
  private async failed(message: string): Promise<void> {
    this.lastError = message;
    this.failures++;
    if (this.failures > this.opts.retries) {
      throw new Fatal(`${message} (gave up after ${this.opts.retries} ${this.opts.retries === 1 ? "retry" : "retries"})`);
    }
    const delay = Math.min(30_000, this.opts.retryDelayMs * 2 ** (this.failures - 1)) * (0.8 + Math.random() * 0.4);
    this.opts.events.retry(this.blob, `${message}; retry ${this.failures} of ${this.opts.retries} in ${(delay / 1000).toFixed(1)} s`);
    await sleep(delay, this.opts.signal);
    this.check();
  }

  /** Sends a small, repeatable request, retrying network errors and 5xx. */
  private async simple(method: string, path: string, what: string): Promise<Response> {
    for (;;) {
      this.check();
      try {
        const res = await this.client.request(method, path, { timeoutMs: 60_000 });
        if (!retryable(res)) return res;
        await this.failed(`${what}: ${describeResponse(res)}`);
      } catch (err) {
        if (!(err instanceof NetworkError)) throw err;
        await this.failed(`${what}: ${err.message}`);
      }
    }
  }

  private async push(): Promise<BlobOutcome> {
    const { blob } = this;
    const head = await this.simple("HEAD", this.client.repoPath(`/blobs/${blob.digest}`), `HEAD blob`);
    if (head.status === 200) return "exists";
    if (head.status === 401 || head.status === 403) {
      throw new Fatal(`the registry denies access to ${this.client.repository} (HEAD blob: ${describeResponse(head)}); may these credentials push there?`);
    }
    if (head.status !== 404) throw new Fatal(`HEAD ${blob.digest}: ${describeResponse(head)}`);
    if (await this.open(true)) return "mounted";

    let offset = 0;
    for (;;) {
      this.check();
      if (offset >= blob.size) {
        const res = await this.finish();
        if (res === "done") return "uploaded";
        offset = res;
        continue;
      }
      const end = Math.min(offset + this.chunk, blob.size);
      let problem: string;
      let busy = false;
      try {
        const res = await this.patch(offset, end);
        if (res.status === 202) {
          this.follow(res);
          const held = heldBytes(res);
          if ((held ?? end) > offset) {
            this.failures = 0;
            this.busyMs = 0;
          }
          offset = held !== undefined && held !== end ? held : end;
          this.opts.events.bytes(blob, offset);
          continue;
        }
        if (res.status === 401 || res.status === 403) throw new Fatal(`PATCH: ${describeResponse(res)}`);
        problem = `PATCH bytes ${offset}-${end - 1}: ${describeResponse(res)}`;
        // Not where the registry stands, or another request (maybe our cut-off one) still holds the session.
        busy = res.status === 416;
      } catch (err) {
        if (!(err instanceof NetworkError)) throw err;
        if (err.code === "ESOURCE") throw new Fatal(err.message);
        problem = `PATCH bytes ${offset}-${end - 1}: ${err.message}`;
      }
      if (busy) {
        if (!(await this.waitBusy(problem))) {
          this.opts.events.retry(blob, `the upload session stayed busy for ${Math.round(this.busyMs / 60_000)} min; starting this blob over in a new session`);
          await this.client.request("DELETE", this.location, { timeoutMs: 10_000 }).catch(() => undefined);
          this.busyMs = 0;
          await this.open(false);
          offset = 0;
          this.opts.events.bytes(blob, 0);
          continue;
        }
      } else await this.failed(problem);
      offset = await this.resumeOffset();
      this.opts.events.bytes(blob, offset);
    }
  }

  /**
   * Waits after a 416 (the session is held by another request, typically the one that was cut
   * off, until the registry notices). Does not use up --retries; returns false after BUSY_LIMIT_MS.
   */
  private async waitBusy(message: string): Promise<boolean> {
    this.lastError = message;
    if (this.busyMs >= BUSY_LIMIT_MS) return false;
    const delay = Math.min(30_000, Math.max(250, this.opts.retryDelayMs) * 2 ** Math.min(10, Math.floor(this.busyMs / 5000)));
    this.busyMs += delay;
    this.opts.events.retry(this.blob, `${message}; asking where the upload stands in ${(delay / 1000).toFixed(1)} s`);
    await sleep(delay, this.opts.signal);
    this.check();
    return true;
  }

  /** Opens an upload session (or mounts). Returns true when the blob was mounted. */
  private async open(mount: boolean): Promise<boolean> {
    const from = mount ? this.opts.mountFrom : undefined;
    const query = from ? `?mount=${encodeURIComponent(this.blob.digest)}&from=${encodeURIComponent(from)}` : "";
    const res = await this.simple("POST", this.client.repoPath(`/blobs/uploads/${query}`), "starting an upload");
    if (res.status === 201 && from) return true;
    if (res.status !== 202) throw new Fatal(`POST ${this.client.repoPath("/blobs/uploads/")}${query}: ${describeResponse(res)}`);
    if (!header(res, "location")) throw new Fatal(`POST ${this.client.repoPath("/blobs/uploads/")}: 202 without a Location header`);
    this.follow(res);
    const max = Number(header(res, "oci-chunk-max-length") ?? NaN);
    const min = Number(header(res, "oci-chunk-min-length") ?? NaN);
    let chunk = Math.min(this.opts.chunkSize ?? Infinity, max > 0 ? max : DEFAULT_CHUNK);
    if (min > 0 && chunk < min && (!(max > 0) || min <= max)) chunk = min;
    this.chunk = chunk;
    return false;
  }

  private follow(res: Response): void {
    const location = header(res, "location");
    if (location) this.location = new URL(location, res.url).toString();
  }

  /** Where the registry says the upload stands; a new session from 0 if it forgot this one. */
  private async resumeOffset(): Promise<number> {
    for (;;) {
      const res = await this.simple("GET", this.location, "asking where the upload stands");
      if (res.status === 204 || res.status === 200) {
        this.follow(res);
        const held = heldBytes(res);
        if (held === undefined) throw new Fatal(`GET upload status: ${res.status} without a usable Range header (${header(res, "range")})`);
        return held;
      }
      if (res.status === 404) {
        this.opts.events.retry(this.blob, "the registry no longer knows the upload session; starting this blob over");
        this.location = "";
        await this.open(false);
        return 0;
      }
      throw new Fatal(`GET upload status: ${describeResponse(res)}`);
    }
  }

  /** Streams bytes [start, end), hashing what was not hashed yet and reporting progress. */
  private body(start: number, end: number): () => Readable {
    return () => {
      const src = this.blob.open(start, end);
      let pos = start;
      const tap = new Transform({
        transform: (chunk: Buffer, _enc, cb) => {
          const next = pos + chunk.length;
          if (this.hash && pos <= this.hashedUpTo && next > this.hashedUpTo) {
            this.hash.update(chunk.subarray(this.hashedUpTo - pos));
            this.hashedUpTo = next;
          }
          pos = next;
          this.opts.events.bytes(this.blob, pos);
          cb(null, chunk);
        },
      });
      src.on("error", (err) => tap.destroy(err));
      return src.pipe(tap);
    };
  }

  private patch(start: number, end: number): Promise<Response> {
    return this.client.request("PATCH", this.location, {
      headers: { "content-type": "application/octet-stream", "content-range": `${start}-${end - 1}` },
      body: this.body(start, end),
      bodyLength: end - start,
      signal: this.opts.signal,
    });
  }

  /** Checks the digest of what was read, then closes the session. Returns "done" or where to resume. */
  private async finish(): Promise<"done" | number> {
    const { blob } = this;
    if (this.hash) {
      if (this.hashedUpTo < blob.size) {
        for await (const c of blob.open(this.hashedUpTo, blob.size)) this.hash.update(c as Buffer);
        this.hashedUpTo = blob.size;
      }
      const actual = `sha256:${this.hash.digest("hex")}`;
      this.hash = undefined;
      if (actual !== blob.digest) throw new Fatal(`its content hashes to ${actual}: the source is corrupt or changed while it was read`);
    }
    try {
      const res = await this.client.request("PUT", withQuery(this.location, "digest", blob.digest), {
        headers: { "content-type": "application/octet-stream" },
        timeoutMs: 300_000,
      });
      if (res.status === 201 || res.status === 204) {
        const got = header(res, "docker-content-digest");
        if (got && got !== blob.digest) throw new Fatal(`the registry stored it as ${got}`);
        return "done";
      }
      if (res.status === 400 || res.status === 401 || res.status === 403) throw new Fatal(`PUT ?digest=: ${describeResponse(res)}`);
      await this.failed(`PUT ?digest=: ${describeResponse(res)}`);
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
      await this.failed(`PUT ?digest=: ${err.message}`);
    }
    // Did it land anyway?
    const head = await this.simple("HEAD", this.client.repoPath(`/blobs/${blob.digest}`), "HEAD blob");
    if (head.status === 200) return "done";
    return this.resumeOffset();
  }
}
