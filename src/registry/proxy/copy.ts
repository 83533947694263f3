import { MAX_PUT } from "../r2/blobs";
import type { CopyTee } from "./tee";

/**
 * When a blob pulled through is copied into R2, and for how long. A copy must fit the platform's
 * time: the response may stream as long as the client reads, but once the client has gone (or has
 * its last byte) work passed to `waitUntil` gets 30 s more at most, then is cancelled
 * (https://developers.cloudflare.com/workers/platform/limits/#duration, "How long can a subrequest
 * take?"); and a request has 30 s of CPU by default
 * (https://developers.cloudflare.com/workers/platform/limits/#cpu-time).
 */
export interface CopyLimits {
  /** Largest blob copied, in bytes; larger ones are streamed to the client and not cached. */
  maxSize: number;
  /** Most bytes the copy may fall behind the client before it is abandoned (or run ahead of it). */
  lag: number;
  /** How long the copy may go on once the client has its last byte, in ms (under waitUntil's 30 s). */
  tailMs: number;
}

const GiB = 1024 * 1024 * 1024;

/**
 * Worker CPU a copy costs per GiB, to be safe: twice the ~1 s measured under the local stack (a
 * 1 GiB blob pulled through `pnpm dev` from distribution 2.8 cost workerd 13.2 s of CPU copied,
 * 13.4 s for a monolithic push of the same bytes, i.e. the local R2 simulator's write and checksum,
 * which R2 does itself on Cloudflare, and 1.0 s passed through uncopied).
 */
export const COPY_CPU_MS_PER_GIB = 2000;
/** The share of a request's default 30 s of CPU a copy may take: half. */
export const COPY_CPU_BUDGET_MS = 15_000;

/**
 * Default largest copy: 4.99 GiB, one R2 `put` ({@link MAX_PUT}). A copy is a single write, so a
 * copy cut off at any point stores nothing; and its CPU, estimated at {@link COPY_CPU_MS_PER_GIB},
 * fits {@link COPY_CPU_BUDGET_MS} up to 7.5 GiB, so the single write is the bound. Time is no
 * bound: the copy goes at the client's pace while the client reads (the platform sets no limit
 * then), and is abandoned when the client leaves (see {@link guardCopy}). Larger blobs are served
 * uncopied; `REGISTRIES_COPY_MAX_SIZE` lowers the bound.
 */
export const DEFAULT_COPY_MAX_SIZE = Math.floor(Math.min(MAX_PUT, (COPY_CPU_BUDGET_MS / COPY_CPU_MS_PER_GIB) * GiB));

/**
 * Default limits: the copy may lag 16 MiB behind the client (memory held per pull, as much as an
 * upload of unknown length holds), and gets 20 s after the client's last byte to write what it
 * still holds (at most those 16 MiB: under 20 s even at a slow 1 MiB/s), within waitUntil's 30 s.
 */
export const DEFAULT_COPY_LIMITS: CopyLimits = { maxSize: DEFAULT_COPY_MAX_SIZE, lag: 16 * 1024 * 1024, tailMs: 20_000 };

/**
 * Why a blob answer is not copied into R2, or `undefined` when it is: only a whole blob (no
 * `Range`), of known length within `maxSize`, under a digest R2 can verify, is. A range or a
 * stream of unknown length goes to the client as it comes, and a later whole pull caches it.
 *
 * @example
 * notCopied({ size: 6 * 1024 ** 3, range: false, verifiable: true }, DEFAULT_COPY_LIMITS); // "it is larger than …"
 */
export function notCopied(blob: { size: number | undefined; range: boolean; verifiable: boolean }, limits: CopyLimits): string | undefined {
  if (blob.range) return "a range was asked for";
  if (!blob.verifiable) return "its digest cannot be verified";
  if (blob.size === undefined) return "the upstream did not say its length";
  if (blob.size > limits.maxSize) return `it is larger than the ${limits.maxSize} bytes a pull copies (REGISTRIES_COPY_MAX_SIZE)`;
  return undefined;
}

/**
 * Keeps a copy within the platform's time: abandoned as soon as the client goes away (what is left
 * to copy might not finish within waitUntil's 30 s, and the next whole pull copies it again), and
 * when it is not done `tailMs` after the client had its last byte. An abandoned copy's R2 write
 * fails, storing nothing. Call the returned function once the copy is over.
 *
 * @example
 * const settle = guardCopy(tee, DEFAULT_COPY_LIMITS);
 * try { await local.putBlob(name, digest, { body: tee.copy, length: size }); } finally { settle(); }
 */
export function guardCopy(tee: CopyTee, limits: CopyLimits): () => void {
  let over = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  void tee.clientEnd.then((end) => {
    if (over) return;
    if (end === "cancelled") tee.abandon(new Error("the client went away before it had the whole blob"));
    else if (end === "ended") {
      timer = setTimeout(() => tee.abandon(new Error(`not done ${limits.tailMs} ms after the client had the whole blob`)), limits.tailMs);
    }
  });
  return () => {
    over = true;
    if (timer !== undefined) clearTimeout(timer);
  };
}

/** The largest copy allowed (`REGISTRIES_COPY_MAX_SIZE`): one R2 `put`. */
export const MAX_COPY_SIZE = Math.floor(MAX_PUT);
