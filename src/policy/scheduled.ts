import { configFor } from "../config";
import type { Env } from "../env";
import { scheduledContext } from "../events/event";
import { Notifier } from "../events/notifier";
import { NotifyingRegistry } from "../events/registry";
import { R2Registry } from "../registry/r2";
import type { Registry } from "../registry/registry";
import { withPolicies } from "./index";
import { describeRetention, retainAll } from "./run";

/**
 * The cron trigger's retention (before its garbage collection, so the collection frees what the
 * removed tags held): one bounded invocation of the run kept at `_retention/runs/scheduled`, which
 * the next trigger goes on with until it is complete. The tags it removes are notified as tag
 * deletes (`NOTIFICATIONS_JSON`), before it returns. Nothing without `RETENTION_JSON` rules. Never
 * throws: a failure is logged and the collection still runs.
 *
 * @example
 * await scheduledRetention(env, invocationBucket(env.REGISTRY, config.r2Limits));
 */
export async function scheduledRetention(env: Env, bucket: R2Bucket | undefined = env.REGISTRY): Promise<void> {
  if (!bucket) return;
  const config = configFor(env);
  if (config.policy.retention.length === 0) return;
  const sending: Promise<unknown>[] = [];
  try {
    // As a request's: immutable tags inside, notifications outside.
    const limits = { operations: config.gc.maxOperations, ms: config.gc.maxMs };
    let registry: Registry = withPolicies(new R2Registry(bucket, { partSize: config.uploadPartSize, limits }), config);
    const { endpoints } = config.notifications;
    if (endpoints.length > 0) {
      const notifier = new Notifier(endpoints, { waitUntil: (p) => sending.push(p), queue: env.NOTIFICATIONS_QUEUE });
      registry = new NotifyingRegistry(registry, notifier, scheduledContext());
    }
    const run = await retainAll({ registry, bucket, config }, { dryRun: false, scheduled: true });
    console.log(`r2-registry: scheduled retention: ${describeRetention(run)}`);
  } catch (error) {
    console.error("r2-registry: scheduled retention failed:", error);
  } finally {
    await Promise.allSettled(sending);
  }
}
