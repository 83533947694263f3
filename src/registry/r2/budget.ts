import { metered, totalOf, type R2Usage } from "./metered";

/**
 * Cloudflare's limits that bound one invocation, which the local simulator does not enforce
 * (https://developers.cloudflare.com/workers/platform/limits/):
 * - subrequests: 50 per invocation on Workers Free, 10,000 by default on Workers Paid
 *   (`limits.subrequests` in wrangler.toml); every R2 binding call is one;
 * - CPU time: 30 s per request by default; a Cron Trigger gets 30 s when it runs more often than
 *   hourly, else 15 min; wall time of a cron run: 15 min; `waitUntil` work: 30 s after the response.
 * R2 (https://developers.cloudflare.com/r2/platform/limits/ and
 * https://developers.cloudflare.com/r2/api/workers/workers-api-reference/): `list` returns and
 * `delete` takes at most 1,000 keys per call; more than one write per second to one key gets 429.
 */
export interface Limits {
  /** R2 calls one invocation may make for this work. */
  operations: number;
  /** Wall time it may take, in milliseconds. */
  ms: number;
}

/**
 * A bound on the work of one invocation: R2 calls (counted through `bucket`, which every call of
 * the bounded work must use) and wall time. Work checks `allows(n)` before a step that makes up to
 * `n` calls, and stops (saving where it is) when it does not; `slice` hands a part of what is left
 * to a sub-task, counted in the same total.
 *
 * @example
 * const budget = Budget.start(env.REGISTRY, { operations: 8000, ms: 30_000 });
 * while (budget.allows(2)) await step(budget.bucket);
 * const sweeps = budget.slice(budget.left / 4);
 */
export class Budget {
  private constructor(
    /** The bucket whose calls this budget counts. */
    readonly bucket: R2Bucket,
    private readonly usage: R2Usage,
    /** The total count when this budget started. */
    private readonly base: number,
    /** Calls this budget may make. */
    readonly capacity: number,
    /** When its time is up, in ms since the epoch. */
    readonly deadline: number,
    /** The capacity of the whole invocation's budget (this one's, or the one it is a slice of). */
    readonly whole: number,
  ) {}

  /** A budget of `limits` from now, over a counting wrapper of `bucket`. */
  static start(bucket: R2Bucket, limits: Limits): Budget {
    const { bucket: counted, usage } = metered(bucket);
    const capacity = Math.max(0, Math.floor(limits.operations));
    return new Budget(counted, usage, 0, capacity, Date.now() + limits.ms, capacity);
  }

  /** Calls made through this budget (and its slices) so far. */
  get used(): number {
    return totalOf(this.usage) - this.base;
  }

  /** Calls still allowed. */
  get left(): number {
    return Math.max(0, this.capacity - this.used);
  }

  /** True once the time is up. */
  get expired(): boolean {
    return Date.now() >= this.deadline;
  }

  /** True while time is left and `n` more calls fit. */
  allows(n = 1): boolean {
    return !this.expired && this.left >= n;
  }

  /** A budget of at most `operations` of what is left (same bucket, same deadline, same count). */
  slice(operations: number): Budget {
    return new Budget(this.bucket, this.usage, totalOf(this.usage), Math.max(0, Math.min(Math.floor(operations), this.left)), this.deadline, this.whole);
  }
}
