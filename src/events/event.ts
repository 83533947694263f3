import type { Principal } from "../auth";
import type { CollectReport } from "../registry/r2/gc";
import type { ManifestInfo } from "../registry/registry";

/** What happened: distribution's action names. */
export type Action = "push" | "pull" | "delete";

/**
 * What an event is about, in the field order of distribution's `Event.Target`. A push or pull
 * names a manifest in full; a delete names only the repository and the digest or the tag.
 */
export interface EventTarget {
  mediaType?: string;
  digest?: string;
  size?: number;
  /** The same as `size` (distribution keeps both for older consumers). */
  length?: number;
  repository: string;
  url?: string;
  tag?: string;
}

/** The HTTP request that caused an event (distribution's `RequestRecord`). */
export interface RequestRecord {
  id: string;
  /** The client's address (`CF-Connecting-IP`). */
  addr?: string;
  /** The registry's host as the client called it. */
  host?: string;
  method: string;
  useragent: string;
}

/** Who caused an event: a name only, never a password or token. Empty for anonymous pulls and cron runs. */
export interface ActorRecord {
  name?: string;
}

/** Which registry generated an event: its host, and this Worker isolate. */
export interface SourceRecord {
  addr?: string;
  instanceID: string;
}

/** One event, as distribution's notifications document it. */
export interface RegistryEvent {
  id: string;
  timestamp: string;
  action: Action;
  target: EventTarget;
  request: RequestRecord;
  actor: ActorRecord;
  source: SourceRecord;
}

/** What an event is about: a manifest (`artifact`), a tag or a blob. */
export type Kind = "artifact" | "tag" | "blob";

/**
 * An event with what distribution's shape leaves the consumer to infer (a delete by digest names a
 * manifest or a blob), and the registry's origin: what the CloudEvents form needs besides.
 */
export interface Notice {
  kind: Kind;
  /** `https://registry.example`; absent for cron runs. */
  origin?: string;
  event: RegistryEvent;
}

/** Where events come from: the request (or cron run), who made it, and the registry's origin. */
export interface EventContext {
  request: RequestRecord;
  actor: ActorRecord;
  source: SourceRecord;
  /** `https://registry.example`, for target URLs; absent for cron runs. */
  origin?: string;
}

/** Longest user agent carried (a queued message must stay small). */
const MAX_USER_AGENT = 512;

let instanceId: string | undefined;

/** A random id of this isolate, made on first use (random values are not allowed at start-up). */
function instanceID(): string {
  return (instanceId ??= crypto.randomUUID());
}

/**
 * The context of events caused by a client's request.
 *
 * @example
 * const context = requestContext(request, new URL(request.url), principal);
 * context.actor; // { name: "ci" }
 */
export function requestContext(request: Request, url: URL, principal: Principal): EventContext {
  const addr = request.headers.get("CF-Connecting-IP") ?? undefined;
  return {
    request: {
      id: request.headers.get("CF-Ray") ?? crypto.randomUUID(),
      ...(addr ? { addr } : {}),
      host: url.host,
      method: request.method,
      useragent: (request.headers.get("User-Agent") ?? "").slice(0, MAX_USER_AGENT),
    },
    actor: principal.anonymous ? {} : { name: principal.username },
    source: { addr: url.host, instanceID: instanceID() },
    origin: url.origin,
  };
}

/**
 * The context of events caused by a cron trigger's run: no client, no actor.
 *
 * @example
 * notifier.emit(collectionEvents(scheduledContext(), report));
 */
export function scheduledContext(): EventContext {
  return { request: { id: crypto.randomUUID(), method: "", useragent: "" }, actor: {}, source: { instanceID: instanceID() } };
}

function notice(context: EventContext, kind: Kind, action: Action, target: EventTarget): Notice {
  const event: RegistryEvent = {
    id: crypto.randomUUID(),
    timestamp: new Date().toISOString(),
    action,
    target,
    request: context.request,
    actor: context.actor,
    source: context.source,
  };
  return context.origin ? { kind, origin: context.origin, event } : { kind, event };
}

function pathOf(name: string): string {
  return name.split("/").map(encodeURIComponent).join("/");
}

/**
 * A manifest push (one per tag; untagged: one without) or pull (with the tag it was pulled by).
 *
 * @example
 * manifestEvent(context, "push", "team/app", { digest, size: 528, mediaType }, "v1");
 */
export function manifestEvent(context: EventContext, action: "push" | "pull", name: string, info: ManifestInfo, tag?: string): Notice {
  return notice(context, "artifact", action, {
    mediaType: info.mediaType,
    digest: info.digest,
    size: info.size,
    length: info.size,
    repository: name,
    ...(context.origin ? { url: `${context.origin}/v2/${pathOf(name)}/manifests/${info.digest}` } : {}),
    ...(tag !== undefined ? { tag } : {}),
  });
}

/**
 * A delete of a manifest or a blob (by digest) or of a tag: distribution's target names only the
 * repository and the digest or the tag.
 *
 * @example
 * deleteEvent(context, "team/app", { tag: "v1" });
 * deleteEvent(context, "team/app", { blob: "sha256:…" });
 */
export function deleteEvent(context: EventContext, name: string, what: { manifest: string } | { blob: string } | { tag: string }): Notice {
  if ("tag" in what) return notice(context, "tag", "delete", { repository: name, tag: what.tag });
  if ("blob" in what) return notice(context, "blob", "delete", { digest: what.blob, repository: name });
  return notice(context, "artifact", "delete", { digest: what.manifest, repository: name });
}

/**
 * The deletes a garbage collection made in one repository, in the order it makes them: each
 * manifest's tags, then the manifest, then the blobs. A dry run made none.
 *
 * @example
 * notifier.emit(collectionEvents(context, await registry.collect("team/app", options)));
 */
export function collectionEvents(context: EventContext, report: CollectReport): Notice[] {
  if (report.dryRun) return [];
  const events: Notice[] = [];
  for (const manifest of report.manifests) {
    for (const tag of manifest.tags) events.push(deleteEvent(context, report.name, { tag }));
    events.push(deleteEvent(context, report.name, { manifest: manifest.digest }));
  }
  for (const blob of report.blobs) events.push(deleteEvent(context, report.name, { blob: blob.digest }));
  return events;
}
