import { wants, type Endpoint } from "./config";
import { deliverNow } from "./deliver";
import type { Action, Notice } from "./event";
import { enqueue, type QueuedEnvelope } from "./queue";

/** Where the notifier's work runs, and the queue it sends to when one is bound. */
export interface NotifierOptions {
  /** Runs work after the response (ExecutionContext.waitUntil). */
  waitUntil(promise: Promise<unknown>): void;
  /** `NOTIFICATIONS_QUEUE`: reliable delivery by the queue consumer; absent, best effort. */
  queue?: Queue<QueuedEnvelope> | undefined;
}

/**
 * Sends events to the endpoints that want them, after the response: through the queue when one is
 * bound (falling back to best effort if sending to it fails), else straight to the endpoints with
 * a bounded retry. Never throws and never delays the caller.
 *
 * @example
 * const notifier = new Notifier(config.notifications.endpoints, { waitUntil: (p) => ctx.waitUntil(p), queue: env.NOTIFICATIONS_QUEUE });
 * notifier.emit([deleteEvent(context, "team/app", { tag: "v1" })]);
 */
export class Notifier {
  constructor(
    readonly endpoints: readonly Endpoint[],
    private readonly options: NotifierOptions,
  ) {}

  /** Whether some endpoint wants events of this action in this repository (pulls are asked for). */
  wants(action: Action, repository: string): boolean {
    return this.endpoints.some((endpoint) => wants(endpoint, action, repository));
  }

  emit(notices: Notice[]): void {
    if (notices.length === 0) return;
    for (const endpoint of this.endpoints) {
      const chosen = notices.filter((n) => wants(endpoint, n.event.action, n.event.target.repository));
      if (chosen.length === 0) continue;
      const queue = this.options.queue;
      if (!queue) {
        this.options.waitUntil(deliverNow(endpoint, chosen));
        continue;
      }
      this.options.waitUntil(
        enqueue(queue, endpoint, chosen).catch((error: unknown) => {
          console.warn(`r2-registry: notifications: NOTIFICATIONS_QUEUE refused events for ${endpoint.shown} (${(error as Error)?.message ?? error}); delivering them directly`);
          return deliverNow(endpoint, chosen);
        }),
      );
    }
  }
}
