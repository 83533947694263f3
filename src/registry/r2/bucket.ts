import type { R2LimitsConfig } from "../../config";
import { limited } from "./limited";
import { retrying } from "./retrying";

/**
 * The bucket one invocation works on: the binding, with Cloudflare's limits enforced when
 * `R2_LIMITS=enforce` (a fresh subrequest budget per invocation), always behind the layer that
 * retries R2's 429 for writes of one key and answers 503 if it persists.
 *
 * @example
 * const bucket = invocationBucket(env.REGISTRY, config.r2Limits);
 */
export function invocationBucket(binding: R2Bucket, limits: R2LimitsConfig): R2Bucket {
  return retrying(limits.enforce ? limited(binding, { subrequests: limits.subrequests }) : binding);
}
