import { configFor } from "../config";
import type { Env } from "../env";
import { R2Registry } from "../registry/r2";
import { withPolicies } from "./index";
import { describeRetention, retainAll } from "./run";

/**
 * The cron trigger's retention (before its garbage collection, so the collection frees what the
 * removed tags held): one bounded invocation of the run kept at `_retention/runs/scheduled`, which
 * the next trigger goes on with until it is complete. Nothing without `RETENTION_JSON` rules. Never
 * throws: a failure is logged and the collection still runs.
 *
 * @example
 * await scheduledRetention(env);
 */
export async function scheduledRetention(env: Env): Promise<void> {
  if (!env.REGISTRY) return;
  const config = configFor(env);
  if (config.policy.retention.length === 0) return;
  try {
    const local = new R2Registry(env.REGISTRY, { partSize: config.uploadPartSize });
    const run = await retainAll({ registry: withPolicies(local, config), bucket: env.REGISTRY, config }, { dryRun: false, scheduled: true });
    console.log(`r2-registry: scheduled retention: ${describeRetention(run)}`);
  } catch (error) {
    console.error("r2-registry: scheduled retention failed:", error);
  }
}
