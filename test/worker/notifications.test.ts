import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { parseConfig } from "../../src/config";
import type { Env } from "../../src/env";
import { deliverNow, MAX_IN_FLIGHT } from "../../src/events/deliver";
import type { QueuedEnvelope } from "../../src/events/queue";
import { call, imageManifest, OCI_MANIFEST, ORIGIN, pushBlob, RW, uniqueName } from "./helpers";

// ---- Endpoints: every fetch the Worker makes is answered here, by URL without the query. ----

interface Delivery {
  url: string;
  headers: Headers;
  body: unknown;
}

type Hook = (request: Request) => Response | Promise<Response>;

const HOOK = "https://hooks.test/registry";
const OTHER = "https://other.test/events";
const SECRET = "s3cret-hook-token";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let hooks: Record<string, Hook> = {};
let deliveries: Delivery[] = [];

beforeEach(() => {
  hooks = {};
  deliveries = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const hook = hooks[`${url.origin}${url.pathname}`];
    const text = await request.text();
    deliveries.push({ url: request.url, headers: request.headers, body: text === "" ? undefined : JSON.parse(text) });
    return hook ? hook(request) : new Response(null, { status: 202 });
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** Environment with these endpoints (their header secret is HOOK_TOKEN). */
function hooked(entries: object[], extra: Partial<Env> = {}): Partial<Env> {
  return { NOTIFICATIONS_JSON: JSON.stringify(entries), HOOK_TOKEN: SECRET, ...extra };
}

const distribution = (more: object = {}) => ({ url: HOOK, headers_env: { Authorization: "HOOK_TOKEN" }, ...more });

interface DistributionEvent {
  id: string;
  timestamp: string;
  action: string;
  target: Record<string, unknown>;
  request: Record<string, unknown>;
  actor: Record<string, unknown>;
  source: Record<string, unknown>;
}

/** The events delivered to `url`, in order. */
function eventsAt(url = HOOK): DistributionEvent[] {
  return deliveries.filter((d) => d.url.startsWith(url)).flatMap((d) => (d.body as { events: DistributionEvent[] }).events);
}

const CLIENT = { "User-Agent": "skopeo/1.13.3", "CF-Connecting-IP": "203.0.113.7" };

async function put(name: string, reference: string, text: string, overrides: Partial<Env>) {
  return call(`/v2/${name}/manifests/${reference}`, { method: "PUT", body: text, headers: { "Content-Type": OCI_MANIFEST, ...CLIENT }, env: overrides });
}

describe("distribution's envelope", () => {
  it("a push by tag: one push event, field by field as distribution documents it, and no credentials", async () => {
    const name = uniqueName("events");
    const image = await imageManifest(name, 1);
    const res = await put(name, "v1", image.text, hooked([distribution()]));
    expect(res.status).toBe(201);

    expect(deliveries).toHaveLength(1);
    const [delivery] = deliveries;
    expect(delivery!.url).toBe(HOOK);
    expect(delivery!.headers.get("Content-Type")).toBe("application/vnd.docker.distribution.events.v1+json");
    expect(delivery!.headers.get("Authorization")).toBe(SECRET);
    expect(Object.keys(delivery!.body as object)).toEqual(["events"]);
    const [event] = eventsAt();
    expect(Object.keys(event!)).toEqual(["id", "timestamp", "action", "target", "request", "actor", "source"]);
    expect(event!.id).toMatch(UUID);
    expect(Math.abs(Date.parse(event!.timestamp) - Date.now())).toBeLessThan(60_000);
    expect(event!.timestamp).toBe(new Date(event!.timestamp).toISOString());
    expect(event!.action).toBe("push");
    const size = new TextEncoder().encode(image.text).byteLength;
    expect(Object.keys(event!.target)).toEqual(["mediaType", "digest", "size", "length", "repository", "url", "tag"]);
    expect(event!.target).toEqual({
      mediaType: OCI_MANIFEST,
      digest: image.digest,
      size,
      length: size,
      repository: name,
      url: `${ORIGIN}/v2/${name}/manifests/${image.digest}`,
      tag: "v1",
    });
    expect(Object.keys(event!.request)).toEqual(["id", "addr", "host", "method", "useragent"]);
    expect(event!.request).toMatchObject({ addr: "203.0.113.7", host: "registry.test", method: "PUT", useragent: "skopeo/1.13.3" });
    expect(event!.request.id).toEqual(expect.any(String));
    expect(event!.actor).toEqual({ name: "hello" });
    expect(event!.source).toEqual({ addr: "registry.test", instanceID: expect.stringMatching(UUID) });
    // The actor's name only: never the password, the Authorization header or the endpoint's secret.
    const text = JSON.stringify(delivery!.body);
    for (const secret of ["world", RW.slice("Basic ".length), SECRET]) expect(text).not.toContain(secret);
  });

  it("a push by digest: one event per ?tag=, or one without a tag", async () => {
    const name = uniqueName("events");
    const image = await imageManifest(name, 2);
    expect((await put(name, `${image.digest}?tag=a&tag=b`, image.text, hooked([distribution()]))).status).toBe(201);
    expect(eventsAt().map((e) => [e.action, e.target.tag, e.target.digest])).toEqual([
      ["push", "a", image.digest],
      ["push", "b", image.digest],
    ]);
    // One request for both, sharing the request's id.
    expect(deliveries).toHaveLength(1);
    expect(new Set(eventsAt().map((e) => e.request.id)).size).toBe(1);

    deliveries = [];
    const untagged = await imageManifest(name, 3);
    expect((await put(name, untagged.digest, untagged.text, hooked([distribution()]))).status).toBe(201);
    const [event] = eventsAt();
    expect(event!.target).not.toHaveProperty("tag");
    expect(event!.target.digest).toBe(untagged.digest);
  });

  it("deletes of a tag, a manifest and a blob name the repository and the tag or digest only", async () => {
    const name = uniqueName("events");
    const image = await imageManifest(name, 4);
    expect((await put(name, "v1", image.text, {})).status).toBe(201);
    const stray = await pushBlob(name, "a blob to delete");
    const env = hooked([distribution()]);
    const del = (path: string) => call(`/v2/${name}/${path}`, { method: "DELETE", headers: CLIENT, env });
    expect((await del("manifests/v1")).status).toBe(202);
    expect((await del(`manifests/${image.digest}`)).status).toBe(202);
    expect((await del(`blobs/${stray}`)).status).toBe(202);
    // Unknown references delete nothing, and say nothing.
    expect((await del("manifests/v1")).status).toBe(404);

    const events = eventsAt();
    expect(events.map((e) => e.target)).toEqual([
      { repository: name, tag: "v1" },
      { digest: image.digest, repository: name },
      { digest: stray, repository: name },
    ]);
    for (const e of events) {
      expect(e.action).toBe("delete");
      expect(e.request).toMatchObject({ method: "DELETE", host: "registry.test" });
      expect(e.actor).toEqual({ name: "hello" });
    }
  });

  it("pulls: only to endpoints that list pull, for GET (not HEAD), with the tag pulled by", async () => {
    const name = uniqueName("events");
    const image = await imageManifest(name, 5);
    expect((await put(name, "v1", image.text, {})).status).toBe(201);
    const env = hooked([distribution(), { url: OTHER, actions: ["pull"] }]);
    const get = (reference: string, method = "GET") => call(`/v2/${name}/manifests/${reference}`, { method, headers: CLIENT, env });
    expect((await get("v1", "HEAD")).status).toBe(200);
    expect(deliveries).toHaveLength(0);
    expect((await get("v1")).status).toBe(200);
    expect((await get(image.digest)).status).toBe(200);
    expect((await get("nope")).status).toBe(404);

    expect(eventsAt(HOOK)).toHaveLength(0);
    const pulls = eventsAt(OTHER);
    expect(pulls.map((e) => [e.action, e.target.tag, e.request.method])).toEqual([
      ["pull", "v1", "GET"],
      ["pull", undefined, "GET"],
    ]);
    expect(pulls[0]!.target).toMatchObject({ mediaType: OCI_MANIFEST, digest: image.digest, repository: name });
  });

  it("filters by action and by repository pattern", async () => {
    const team = uniqueName("team");
    const other = uniqueName("other");
    const env = hooked([
      { url: HOOK, repositories: [`${team.split("/")[0]}/*`] },
      { url: OTHER, actions: ["delete"] },
    ]);
    const a = await imageManifest(team, 6);
    const b = await imageManifest(other, 7);
    expect((await put(team, "v1", a.text, env)).status).toBe(201);
    expect((await put(other, "v1", b.text, env)).status).toBe(201);
    expect((await call(`/v2/${other}/manifests/v1`, { method: "DELETE", env })).status).toBe(202);

    expect(eventsAt(HOOK).map((e) => [e.action, e.target.repository])).toEqual([["push", team]]);
    expect(eventsAt(OTHER).map((e) => [e.action, e.target.repository, e.target.tag])).toEqual([["delete", other, "v1"]]);
  });

  it("garbage collection: the deletes of its report, after the run; a dry run sends nothing", async () => {
    const name = uniqueName("events-gc");
    const image = await imageManifest(name, 8);
    expect((await put(name, "v1", image.text, {})).status).toBe(201);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    const env = hooked([distribution()]);
    const gc = (query: string) => call(`/v2/${name}/gc?mode=untagged&grace=0${query}`, { method: "POST", env });

    expect((await gc("&dry_run=true")).status).toBe(200);
    expect(deliveries).toHaveLength(0);
    expect((await gc("")).status).toBe(200);
    const events = eventsAt();
    expect(events.map((e) => e.action)).toEqual(["delete", "delete", "delete"]);
    expect(events[0]!.target).toEqual({ digest: image.digest, repository: name });
    expect(events.slice(1).map((e) => e.target.digest).sort()).toEqual([...image.blobs].sort());
    expect(events[0]!.request).toMatchObject({ method: "POST" });
    expect(events[0]!.actor).toEqual({ name: "hello" });
  });

  it("a cron run's deletes: no request, no actor", async () => {
    const name = uniqueName("events-cron");
    const image = await imageManifest(name, 9);
    expect((await put(name, "v1", image.text, {})).status).toBe(201);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    const cronEnv = { ...env, GC_MODE: "untagged", GC_GRACE_PERIOD: "0", ...hooked([distribution({ repositories: [name] })]) } as Env;
    await worker.scheduled({ cron: "0 4 * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController, cronEnv);

    const events = eventsAt();
    expect(events.map((e) => e.target.digest).sort()).toEqual([image.digest, ...image.blobs].sort());
    expect(events[0]!.target).toEqual({ digest: image.digest, repository: name });
    expect(events[0]!.request).toEqual({ id: expect.stringMatching(UUID), method: "", useragent: "" });
    expect(events[0]!.actor).toEqual({});
    expect(events[0]!.source).toEqual({ instanceID: expect.stringMatching(UUID) });
  });
});

describe("CloudEvents", () => {
  const cloud = () => hooked([{ url: HOOK, format: "cloudevents", actions: ["push", "delete"] }]);

  it("one event: application/cloudevents+json, structured mode", async () => {
    const name = uniqueName("events-ce");
    const image = await imageManifest(name, 10);
    expect((await put(name, "v1", image.text, cloud())).status).toBe(201);
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]!.headers.get("Content-Type")).toBe("application/cloudevents+json");
    const event = deliveries[0]!.body as Record<string, unknown>;
    expect(event).toEqual({
      specversion: "1.0",
      id: expect.stringMatching(UUID),
      source: ORIGIN,
      type: "r2registry.artifact.pushed",
      subject: `${name}:v1`,
      time: expect.any(String),
      datacontenttype: "application/json",
      data: {
        action: "push",
        target: expect.objectContaining({ digest: image.digest, repository: name, tag: "v1", mediaType: OCI_MANIFEST }),
        request: expect.objectContaining({ method: "PUT", host: "registry.test" }),
        actor: { name: "hello" },
        source: expect.objectContaining({ addr: "registry.test" }),
      },
    });
    expect(Date.parse(event.time as string)).not.toBeNaN();
  });

  it("several events: a batch; tags, manifests and blobs have their own types", async () => {
    const name = uniqueName("events-ce");
    const image = await imageManifest(name, 11);
    expect((await put(name, `${image.digest}?tag=a&tag=b`, image.text, cloud())).status).toBe(201);
    expect(deliveries[0]!.headers.get("Content-Type")).toBe("application/cloudevents-batch+json");
    expect((deliveries[0]!.body as { type: string; subject: string }[]).map((e) => [e.type, e.subject])).toEqual([
      ["r2registry.artifact.pushed", `${name}:a`],
      ["r2registry.artifact.pushed", `${name}:b`],
    ]);
    deliveries = [];
    for (const path of ["manifests/a", `manifests/${image.digest}`, `blobs/${image.blobs[0]}`]) {
      expect((await call(`/v2/${name}/${path}`, { method: "DELETE", env: cloud() })).status).toBe(202);
    }
    expect(deliveries.map((d) => [(d.body as { type: string }).type, (d.body as { subject: string }).subject])).toEqual([
      ["r2registry.tag.deleted", `${name}:a`],
      ["r2registry.artifact.deleted", `${name}@${image.digest}`],
      ["r2registry.blob.deleted", `${name}@${image.blobs[0]}`],
    ]);
  });
});

describe("an endpoint that fails", () => {
  it("is tried twice, logged once with its URL (no query) and status, and the client does not notice", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    hooks[HOOK] = () => new Response("down", { status: 503 });
    const name = uniqueName("events-fail");
    const image = await imageManifest(name, 12);
    const res = await put(name, "v1", image.text, hooked([{ url: `${HOOK}?key=query-secret` }]));
    expect(res.status).toBe(201);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(deliveries).toHaveLength(2);
    const lines = warn.mock.calls.map((c) => c.join(" ")).filter((l) => l.includes("notifications"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(HOOK);
    expect(lines[0]).toContain("status 503");
    expect(lines[0]).not.toContain("query-secret");
  });

  it("an unreachable or silent endpoint: the same, bounded by its timeout", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    hooks[HOOK] = () => {
      throw new TypeError("connection refused");
    };
    hooks[OTHER] = (request) =>
      new Promise((_, reject) => request.signal.addEventListener("abort", () => reject(request.signal.reason)));
    const name = uniqueName("events-fail");
    const image = await imageManifest(name, 13);
    const started = Date.now();
    const res = await put(name, "v1", image.text, hooked([{ url: HOOK }, { url: OTHER, timeout: 1 }]));
    expect(res.status).toBe(201);
    expect(Date.now() - started).toBeLessThan(5000);
    const lines = warn.mock.calls.map((c) => c.join(" ")).filter((l) => l.includes("notifications"));
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.includes(HOOK))).toContain("network error");
    expect(lines.find((l) => l.includes(OTHER))).toContain("no answer within 1 s");
  });

  it("never has more than a few deliveries in flight per isolate: the rest are dropped, logged once", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const waiting: (() => void)[] = [];
    hooks[HOOK] = () => new Promise((resolve) => waiting.push(() => resolve(new Response(null, { status: 204 }))));
    const config = parseConfig({ NOTIFICATIONS_JSON: JSON.stringify([{ url: HOOK }]) });
    const endpoint = config.notifications.endpoints[0]!;
    const notice = { kind: "tag" as const, event: { target: { repository: "a" } } } as never;
    const runs = Array.from({ length: MAX_IN_FLIGHT + 3 }, () => deliverNow(endpoint, [notice]));
    await vi.waitFor(() => expect(waiting).toHaveLength(MAX_IN_FLIGHT));
    const drops = warn.mock.calls.filter((c) => String(c[0]).includes("dropping"));
    expect(drops).toHaveLength(1);
    expect(String(drops[0]![0])).toContain(HOOK);
    for (const release of waiting) release();
    await Promise.all(runs);
    expect(deliveries).toHaveLength(MAX_IN_FLIGHT);
  });
});

describe("with NOTIFICATIONS_QUEUE bound", () => {
  /** A queue binding that keeps what is sent to it. */
  function fakeQueue(fail = false) {
    const sent: { body: QueuedEnvelope; contentType?: string }[] = [];
    const queue = {
      async send(body: QueuedEnvelope) {
        sent.push({ body });
      },
      async sendBatch(messages: Iterable<{ body: QueuedEnvelope; contentType?: string }>) {
        if (fail) throw new Error("queue unavailable");
        sent.push(...messages);
      },
    };
    return { sent, queue: queue as unknown as Queue<QueuedEnvelope> };
  }

  async function consume(bodies: { body: unknown; attempts?: number }[], overrides: Partial<Env>) {
    const batch = createMessageBatch(
      "r2-registry-events",
      bodies.map((m, i) => ({ id: `m${i}`, timestamp: new Date(), attempts: m.attempts ?? 1, body: m.body })),
    );
    // The pool's batch does not report retry delays: watch them.
    const delays = new Map<string, number | undefined>();
    for (const message of batch.messages) {
      const retry = message.retry.bind(message);
      vi.spyOn(message, "retry").mockImplementation((options) => {
        delays.set(message.id, options?.delaySeconds);
        retry(options);
      });
    }
    const ctx = createExecutionContext();
    await worker.queue(batch, { ...env, ...overrides } as Env);
    return { ...(await getQueueResult(batch, ctx)), delays };
  }

  it("events go to the queue, without the endpoint's headers; the consumer delivers them with those", async () => {
    const { sent, queue } = fakeQueue();
    const overrides = hooked([distribution()], { NOTIFICATIONS_QUEUE: queue });
    const name = uniqueName("events-q");
    const image = await imageManifest(name, 14);
    expect((await put(name, "v1", image.text, overrides)).status).toBe(201);
    expect(deliveries).toHaveLength(0);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.contentType).toBe("json");
    expect(sent[0]!.body).toMatchObject({ endpoint: HOOK, format: "distribution" });
    const text = JSON.stringify(sent);
    for (const secret of [SECRET, "world", RW.slice("Basic ".length)]) expect(text).not.toContain(secret);

    const result = await consume([{ body: JSON.parse(JSON.stringify(sent[0]!.body)) }], overrides);
    expect(result.explicitAcks).toEqual(["m0"]);
    expect(result.retryMessages).toEqual([]);
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]!.headers.get("Authorization")).toBe(SECRET);
    expect(eventsAt()[0]).toMatchObject({ action: "push", target: { digest: image.digest, tag: "v1", repository: name } });
  });

  it("the consumer retries a failing endpoint with backoff, keeps its later messages in order untried, and logs once", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    hooks[HOOK] = () => new Response(null, { status: 500 });
    const notice = { kind: "tag", event: { action: "delete", target: { repository: "a", tag: "x" } } };
    const to = (url: string) => ({ endpoint: url, format: "distribution", notices: [notice] });
    const result = await consume(
      [
        { body: to(HOOK), attempts: 1 },
        { body: to(OTHER), attempts: 1 },
        { body: to(HOOK), attempts: 3 },
        { body: to(HOOK), attempts: 20 },
      ],
      hooked([{ url: HOOK }, { url: OTHER }]),
    );
    expect(result.explicitAcks).toEqual(["m1"]);
    expect(result.retryMessages.map((m: { msgId: string }) => m.msgId)).toEqual(["m0", "m2", "m3"]);
    expect(Object.fromEntries(result.delays)).toEqual({ m0: 10, m2: 40, m3: 3600 });
    expect(deliveries.map((d) => d.url)).toEqual([HOOK, OTHER]);
    const lines = warn.mock.calls.map((c) => c.join(" "));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${HOOK} failed (status 500); 3 queued envelopes retried`);
  });

  it("drops messages for endpoints no longer configured, and messages that are not envelopes", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const result = await consume(
      [
        { body: { endpoint: "https://gone.test/x?token=t0ken", format: "distribution", notices: [{ kind: "tag", event: { target: { repository: "a" } } }] } },
        { body: "garbage" },
        { body: { endpoint: HOOK, format: "distribution", notices: [{ kind: "tag" }] } },
      ],
      hooked([{ url: HOOK }]),
    );
    expect(result.explicitAcks.sort()).toEqual(["m0", "m1", "m2"]);
    expect(deliveries).toHaveLength(0);
    expect(warn).toHaveBeenCalledTimes(3);
    expect(String(warn.mock.calls[0]![0])).toContain("https://gone.test/x (distribution): no longer in NOTIFICATIONS_JSON");
    expect(warn.mock.calls.join(" ")).not.toContain("t0ken");
  });

  it("a queue that refuses the events: delivered directly instead", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const { queue } = fakeQueue(true);
    const name = uniqueName("events-q");
    const image = await imageManifest(name, 15);
    expect((await put(name, "v1", image.text, hooked([{ url: HOOK }], { NOTIFICATIONS_QUEUE: queue }))).status).toBe(201);
    expect(eventsAt().map((e) => e.target.tag)).toEqual(["v1"]);
  });
});

describe("NOTIFICATIONS_JSON", () => {
  it("a bad entry is logged and left out; the others work; no secret is ever in a warning", () => {
    const config = parseConfig({
      HOOK_TOKEN: SECRET,
      NOTIFICATIONS_JSON: JSON.stringify([
        { url: HOOK, headers_env: { Authorization: "HOOK_TOKEN" }, actions: ["push", "pull"], repositories: ["team/*"], format: "cloudevents", timeout: 2 },
        { url: "ftp://hooks.test/x" },
        { url: "https://user:pw@hooks.test/x" },
        { url: OTHER, headers_env: { Authorization: "UNSET_SECRET" } },
        { url: OTHER, actions: ["upload"] },
        { url: OTHER, format: "xml" },
        { url: OTHER, repository: ["typo"] },
        { url: OTHER, timeout: 600 },
        { url: OTHER, headers_env: { "Content-Type": "HOOK_TOKEN" } },
        { nourl: true },
        { url: HOOK, format: "cloudevents" },
        { url: OTHER },
      ]),
    });
    const endpoints = config.notifications.endpoints;
    expect(endpoints.map((e) => [e.url, e.format])).toEqual([
      [HOOK, "cloudevents"],
      [OTHER, "distribution"],
    ]);
    expect(endpoints[0]).toMatchObject({ headers: { Authorization: SECRET }, repositories: ["team/*"], timeoutMs: 2000 });
    expect([...endpoints[0]!.actions]).toEqual(["push", "pull"]);
    expect([...endpoints[1]!.actions]).toEqual(["push", "delete"]);
    expect(endpoints[1]!.timeoutMs).toBe(5000);
    const warnings = config.warnings.filter((w) => w.startsWith("NOTIFICATIONS_JSON"));
    expect(warnings).toHaveLength(10);
    expect(warnings.join("\n")).not.toContain(SECRET);
    expect(warnings.join("\n")).not.toContain("pw@");
    expect(warnings.find((w) => w.includes("UNSET_SECRET"))).toContain("not set");
  });

  it("not JSON, or not an array: no endpoints, one warning", () => {
    for (const raw of ["{", '{"url":"https://x"}']) {
      const config = parseConfig({ NOTIFICATIONS_JSON: raw });
      expect(config.notifications.endpoints).toEqual([]);
      expect(config.warnings.filter((w) => w.startsWith("NOTIFICATIONS_JSON"))).toHaveLength(1);
    }
  });

  it("unset: the registry is not wrapped and sends nothing", async () => {
    const name = uniqueName("events-off");
    const image = await imageManifest(name, 16);
    expect((await put(name, "v1", image.text, {})).status).toBe(201);
    expect(deliveries).toHaveLength(0);
  });
});
