import { shownUrl, type Endpoint, type Format, type NotificationsConfig } from "./config";
import { envelopes, pack, post } from "./deliver";
import type { Notice } from "./event";

/**
 * A queued message: one envelope for one endpoint, named by its URL and format (its headers are
 * secrets: they stay in the Worker's environment, never in the queue).
 */
export interface QueuedEnvelope {
  endpoint: string;
  format: Format;
  notices: Notice[];
}

/** `sendBatch` takes at most 100 messages and 256 KB. */
const MAX_BATCH_MESSAGES = 100;
const MAX_BATCH_BYTES = 200 * 1024;
/** First retry after this many seconds, doubling with each attempt, up to {@link MAX_DELAY_SECONDS}. */
export const BASE_DELAY_SECONDS = 10;
export const MAX_DELAY_SECONDS = 3600;

/**
 * Queues events for one endpoint, in envelopes of at most 50 events.
 *
 * @example
 * ctx.waitUntil(enqueue(env.NOTIFICATIONS_QUEUE, endpoint, notices));
 */
export async function enqueue(queue: Queue<QueuedEnvelope>, endpoint: Endpoint, notices: Notice[]): Promise<void> {
  const messages = envelopes(notices).map((batch) => ({
    body: { endpoint: endpoint.url, format: endpoint.format, notices: batch },
    contentType: "json" as const,
  }));
  for (const group of pack(messages, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES, (m) => JSON.stringify(m.body).length)) {
    await queue.sendBatch(group);
  }
}

/**
 * Seconds before the next try of a message that failed `attempts` times: 10, 20, 40, … up to an
 * hour. After the consumer's `max_retries` the queue moves it to the dead-letter queue.
 *
 * @example
 * backoff(3); // 40
 */
export function backoff(attempts: number): number {
  return Math.min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** Math.max(0, attempts - 1));
}

function isEnvelope(body: unknown): body is QueuedEnvelope {
  const b = body as Partial<QueuedEnvelope> | null;
  return (
    typeof b?.endpoint === "string" &&
    (b.format === "distribution" || b.format === "cloudevents") &&
    Array.isArray(b.notices) &&
    b.notices.length > 0 &&
    b.notices.every((n) => typeof n?.event?.target?.repository === "string")
  );
}

/**
 * The queue consumer: delivers each message to its endpoint, in order. A message whose endpoint
 * fails is retried with {@link backoff}, and so are the endpoint's later messages in the batch,
 * untried (order is kept, and an endpoint that is down gets one request per batch); each
 * failing endpoint is logged once per batch, with its URL (no query) and the status. A message
 * for an endpoint no longer configured, or that is not an envelope, is logged and dropped.
 *
 * @example
 * export default { queue: (batch, env) => consume(batch, configFor(env).notifications) };
 */
export async function consume(batch: MessageBatch<unknown>, config: NotificationsConfig): Promise<void> {
  const failed = new Map<string, { endpoint: Endpoint; reason: string; retried: number; delay: number }>();
  for (const message of batch.messages) {
    const body = message.body;
    if (!isEnvelope(body)) {
      console.warn(`r2-registry: notifications: dropped queued message ${message.id}: not an envelope of events`);
      message.ack();
      continue;
    }
    const endpoint = config.endpoints.find((e) => e.url === body.endpoint && e.format === body.format);
    if (!endpoint) {
      console.warn(`r2-registry: notifications: dropped ${body.notices.length} events for ${shownUrl(body.endpoint)} (${body.format}): no longer in NOTIFICATIONS_JSON`);
      message.ack();
      continue;
    }
    const delaySeconds = backoff(message.attempts);
    const failure = failed.get(endpoint.url);
    if (failure) {
      failure.retried++;
      message.retry({ delaySeconds });
      continue;
    }
    const outcome = await post(endpoint, body.notices, endpoint.timeoutMs);
    if (outcome.ok) {
      message.ack();
      continue;
    }
    failed.set(endpoint.url, { endpoint, reason: outcome.reason, retried: 1, delay: delaySeconds });
    message.retry({ delaySeconds });
  }
  for (const { endpoint, reason, retried, delay } of failed.values()) {
    console.warn(`r2-registry: notifications to ${endpoint.shown} failed (${reason}); ${retried} queued envelopes retried in ${delay} s or more`);
  }
}
