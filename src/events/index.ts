/**
 * Notifications: events about what was pushed, pulled and deleted, sent to the endpoints of
 * `NOTIFICATIONS_JSON` in distribution's envelope or as CloudEvents, through `NOTIFICATIONS_QUEUE`
 * when it is bound (retries with backoff, a dead-letter queue) or else best effort after the
 * response. See README, "Notifications".
 */
import type { Principal } from "../auth";
import type { Config } from "../config";
import type { CollectReport } from "../registry/r2/gc";
import type { Registry } from "../registry/registry";
import { collectionEvents, requestContext, scheduledContext } from "./event";
import { Notifier, type NotifierOptions } from "./notifier";
import { consume } from "./queue";
import { NotifyingRegistry } from "./registry";

export { parseNotifications, type Endpoint, type NotificationsConfig } from "./config";
export type { QueuedEnvelope } from "./queue";
export { consume as consumeNotifications };

/** What a request's registry needs to notify: the request, who made it, and how to deliver. */
export interface RequestNotifications extends NotifierOptions {
  request: Request;
  url: URL;
  principal: Principal;
}

/**
 * The registry a request uses, wrapped so that it notifies (see {@link NotifyingRegistry}); the
 * registry itself when no endpoint is configured.
 *
 * @example
 * registry = withNotifications(registry, config, { request, url, principal, waitUntil, queue: env.NOTIFICATIONS_QUEUE });
 */
export function withNotifications(registry: Registry, config: Config, how: RequestNotifications): Registry {
  const { endpoints } = config.notifications;
  if (endpoints.length === 0) return registry;
  return new NotifyingRegistry(registry, new Notifier(endpoints, how), requestContext(how.request, how.url, how.principal));
}

/**
 * Sends the deletes of a cron trigger's garbage collection (its report's repositories).
 *
 * @example
 * notifyScheduledCollection(config, report.repositories, { waitUntil: (p) => ctx.waitUntil(p), queue: env.NOTIFICATIONS_QUEUE });
 */
export function notifyScheduledCollection(config: Config, reports: CollectReport[], how: NotifierOptions): void {
  const { endpoints } = config.notifications;
  if (endpoints.length === 0) return;
  const context = scheduledContext();
  new Notifier(endpoints, how).emit(reports.flatMap((report) => collectionEvents(context, report)));
}
