import type { Format } from "./config";
import type { Notice, RegistryEvent } from "./event";

/** Media type of distribution's envelope (distribution 2.x; 3.x calls the same shape `v2`). */
export const DISTRIBUTION_EVENTS = "application/vnd.docker.distribution.events.v1+json";
/** CloudEvents 1.0, structured mode: one event, or a batch (a JSON array). */
export const CLOUDEVENT = "application/cloudevents+json";
export const CLOUDEVENTS_BATCH = "application/cloudevents-batch+json";

/** The CloudEvents `source` of events from cron runs (which have no request, hence no origin). */
export const SCHEDULED_SOURCE = "urn:r2-registry";

/** A CloudEvents 1.0 event; `data` is the distribution event without its `id` and `timestamp`. */
export interface CloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: "application/json";
  data: Omit<RegistryEvent, "id" | "timestamp">;
}

const PAST: Record<RegistryEvent["action"], string> = { push: "pushed", pull: "pulled", delete: "deleted" };

/**
 * One event in CloudEvents 1.0 form. `type` is `r2registry.<kind>.<action in the past>`
 * (`r2registry.artifact.pushed`, `.artifact.pulled`, `.artifact.deleted`, `r2registry.tag.deleted`,
 * `r2registry.blob.deleted`); `source` the registry's origin (`urn:r2-registry` for cron runs);
 * `subject` `<repository>:<tag>` or `<repository>@<digest>`; `id` and `time` those of the event.
 *
 * @example
 * toCloudEvent(notice).type; // "r2registry.blob.deleted"
 */
export function toCloudEvent(notice: Notice): CloudEvent {
  const { id, timestamp, ...data } = notice.event;
  const { repository, tag, digest } = data.target;
  return {
    specversion: "1.0",
    id,
    source: notice.origin ?? SCHEDULED_SOURCE,
    type: `r2registry.${notice.kind}.${PAST[data.action]}`,
    subject: tag !== undefined ? `${repository}:${tag}` : `${repository}@${digest ?? ""}`,
    time: timestamp,
    datacontenttype: "application/json",
    data,
  };
}

/**
 * The body and content type of one delivery of `notices` in an endpoint's format.
 *
 * @example
 * const { contentType, body } = envelope("distribution", notices);
 * // application/vnd.docker.distribution.events.v1+json, {"events":[…]}
 */
export function envelope(format: Format, notices: Notice[]): { contentType: string; body: string } {
  if (format === "distribution") return { contentType: DISTRIBUTION_EVENTS, body: JSON.stringify({ events: notices.map((n) => n.event) }) };
  const events = notices.map(toCloudEvent);
  if (events.length === 1) return { contentType: CLOUDEVENT, body: JSON.stringify(events[0]) };
  return { contentType: CLOUDEVENTS_BATCH, body: JSON.stringify(events) };
}
