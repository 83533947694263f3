import type { Endpoint } from "./config";
import type { Notice } from "./event";
import { envelope } from "./format";

/** Most events in one envelope (one HTTP request, one queued message). */
export const MAX_EVENTS_PER_ENVELOPE = 50;
/** Most bytes of events in one envelope: a queued message may hold 128 KB. */
export const MAX_ENVELOPE_BYTES = 96 * 1024;
/** Deliveries to one endpoint in flight in one isolate without a queue; beyond, events are dropped. */
export const MAX_IN_FLIGHT = 8;
/** Tries of a delivery without a queue, all within the endpoint's `timeout`. */
const TRIES = 2;
/** Pause before the second try. */
const RETRY_PAUSE_MS = 250;

/** How a delivery went: `ok`, or why not (for the log: a status, a timeout, a network error). */
export type Outcome = { ok: true } | { ok: false; reason: string };

/**
 * Cuts `items` into groups of at most `count` items and `bytes` bytes (as `size` counts them); an
 * item larger than `bytes` is a group alone.
 *
 * @example
 * pack(notices, 50, 96 * 1024, (n) => JSON.stringify(n).length);
 */
export function pack<T>(items: T[], count: number, bytes: number, size: (item: T) => number): T[][] {
  const groups: T[][] = [];
  let group: T[] = [];
  let used = 0;
  for (const item of items) {
    const n = size(item);
    if (group.length > 0 && (group.length >= count || used + n > bytes)) {
      groups.push(group);
      group = [];
      used = 0;
    }
    group.push(item);
    used += n;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * Notices cut into envelopes small enough for one request or one queued message.
 *
 * @example
 * for (const notices of envelopes(all)) await post(endpoint, notices, endpoint.timeoutMs);
 */
export function envelopes(notices: Notice[]): Notice[][] {
  return pack(notices, MAX_EVENTS_PER_ENVELOPE, MAX_ENVELOPE_BYTES, (n) => JSON.stringify(n).length);
}

/**
 * POSTs one envelope to an endpoint, with its secret headers, waiting at most `timeoutMs`. A 2xx
 * is delivered; anything else is not (redirects are not followed: the endpoint's headers must not
 * reach another host).
 *
 * @example
 * const outcome = await post(endpoint, notices, 5000); // { ok: false, reason: "status 503" }
 */
export async function post(endpoint: Endpoint, notices: Notice[], timeoutMs: number): Promise<Outcome> {
  try {
    const { contentType, body } = envelope(endpoint.format, notices);
    const response = await fetch(endpoint.url, {
      method: "POST",
      headers: { ...endpoint.headers, "Content-Type": contentType },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(Math.max(1, timeoutMs)),
    });
    await response.body?.cancel().catch(() => undefined);
    if (response.status >= 200 && response.status < 300) return { ok: true };
    const redirect = response.status >= 300 && response.status < 400 ? " (redirects are not followed: configure the final URL)" : "";
    return { ok: false, reason: `status ${response.status}${redirect}` };
  } catch (error) {
    const name = (error as Error)?.name;
    if (name === "TimeoutError" || name === "AbortError") return { ok: false, reason: `no answer within ${timeoutMs / 1000} s` };
    return { ok: false, reason: `network error: ${(error as Error)?.message ?? String(error)}` };
  }
}

/** Deliveries in flight per endpoint URL, and the endpoints whose drops were logged. */
const inFlight = new Map<string, number>();
const dropping = new Set<string>();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Best-effort delivery without a queue (run in `waitUntil`): each envelope gets two tries within
 * the endpoint's `timeout`; a failure is logged once, with the endpoint (no query) and why. When
 * {@link MAX_IN_FLIGHT} deliveries to the endpoint are already in flight in this isolate (it is
 * slow or down), the events are dropped, logged once until it catches up.
 *
 * @example
 * ctx.waitUntil(deliverNow(endpoint, notices));
 */
export async function deliverNow(endpoint: Endpoint, notices: Notice[]): Promise<void> {
  const key = endpoint.url;
  const busy = inFlight.get(key) ?? 0;
  if (busy >= MAX_IN_FLIGHT) {
    if (!dropping.has(key)) {
      dropping.add(key);
      console.warn(`r2-registry: notifications to ${endpoint.shown}: ${busy} deliveries in flight (slow or down); dropping events until it catches up`);
    }
    return;
  }
  inFlight.set(key, busy + 1);
  try {
    const batches = envelopes(notices);
    for (const [index, batch] of batches.entries()) {
      const deadline = Date.now() + endpoint.timeoutMs;
      let outcome: Outcome = { ok: false, reason: "not tried" };
      for (let attempt = 1; attempt <= TRIES; attempt++) {
        outcome = await post(endpoint, batch, deadline - Date.now());
        if (outcome.ok || deadline - Date.now() < RETRY_PAUSE_MS * 2) break;
        if (attempt < TRIES) await sleep(RETRY_PAUSE_MS);
      }
      if (!outcome.ok) {
        const lost = batches.slice(index).reduce((sum, b) => sum + b.length, 0);
        console.warn(`r2-registry: notifications to ${endpoint.shown} failed (${outcome.reason}); ${lost} events dropped (bind NOTIFICATIONS_QUEUE for retries)`);
        return;
      }
    }
  } finally {
    const left = (inFlight.get(key) ?? 1) - 1;
    if (left > 0) inFlight.set(key, left);
    else inFlight.delete(key);
    if (left < MAX_IN_FLIGHT) dropping.delete(key);
  }
}
