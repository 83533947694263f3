/**
 * Notifications end to end: a small HTTP receiver (node http on a free port) is the endpoint of
 * NOTIFICATIONS_JSON, with its Authorization header from a secret named by headers_env; `pnpm dev`
 * binds its local queue as NOTIFICATIONS_QUEUE, so events go through the queue and the Worker's own
 * consumer. skopeo pushes an image, its tag is deleted, and a garbage collection frees it: the
 * receiver gets exactly those events, in that order. Its first answer is a 503, so the push event
 * only arrives when the consumer retries it (after its 10 s backoff).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { skopeoPush } from "./lib/fixtures.ts";
import { registryLogsOnFailure } from "./lib/harness.ts";
import { describeResponse, RegistryClient } from "./lib/http.ts";
import { MediaType, seededImage, writeOciLayout, type BuiltImage } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir, sleep } from "./lib/processes.ts";
import type { TestRegistry } from "./lib/target.ts";

const REPO = "e2e/events/app";
const TAG = "v1";
const HOOK_SECRET = "Bearer e2e-hook-secret";

interface Received {
  at: number;
  contentType: string | undefined;
  authorization: string | undefined;
  body: string;
}

interface Event {
  action: string;
  target: { mediaType?: string; digest?: string; size?: number; repository: string; tag?: string; url?: string };
  request: { method: string; useragent: string };
  actor: { name?: string };
}

/** The receiver: records every POST; answers 503 to the first, 202 to the others. */
function startReceiver(): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const first = received.length === 0;
      received.push({
        at: Date.now(),
        contentType: req.headers["content-type"],
        authorization: req.headers.authorization,
        body: first ? "" : Buffer.concat(chunks).toString("utf8"),
      });
      res.writeHead(first ? 503 : 202).end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`, received })),
  );
}

describe("notifications through the dev server's queue", () => {
  let work: string | undefined;
  let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
  let dev: RunningDevServer | undefined;
  let client: RegistryClient;
  let image: BuiltImage;

  const events = () => receiver!.received.filter((r) => r.body !== "").flatMap((r) => (JSON.parse(r.body) as { events: Event[] }).events);
  async function waitForEvents(count: number): Promise<Event[]> {
    const deadline = Date.now() + 60_000;
    while (events().length < count && Date.now() < deadline) await sleep(200);
    await sleep(1500); // …and nothing more arrives
    return events();
  }

  beforeAll(async () => {
    work = makeTempDir("e2e-notifications");
    image = seededImage("e2e-notifications", { architecture: "amd64", layerCount: 2 });
    writeOciLayout(join(work, "layout"), [{ tag: TAG, artifact: image }]);
    receiver = await startReceiver();
    dev = await startDevServer({
      env: {
        NOTIFICATIONS_JSON: JSON.stringify([{ url: receiver.url, headers_env: { Authorization: "E2E_HOOK_TOKEN" }, actions: ["push", "delete"] }]),
        E2E_HOOK_TOKEN: HOOK_SECRET,
      },
    });
    client = new RegistryClient(dev.url, { username: dev.username, password: dev.password });
  });
  afterAll(() => cleanupAll([() => dev?.stop(), () => new Promise((resolve) => receiver?.server.close(resolve)), () => removeTempDir(work)]));
  registryLogsOnFailure(() => (dev ? ({ kind: "dev", url: dev.url, logs: dev.logs } as TestRegistry) : undefined));

  it("a skopeo push, a tag delete and a collection: exactly their events, in order, retried once by the queue", async () => {
    const skopeo = new Skopeo(join(work!, "skopeo"));
    const pushed = Date.now();
    await skopeoPush(skopeo, dev!, join(work!, "layout"), TAG, REPO);

    // The first delivery got a 503: the consumer retries it after its backoff, not at once.
    const [push] = await waitForEvents(1);
    const delivered = receiver!.received.find((r) => r.body !== "")!;
    expect(receiver!.received[0]!.body).toBe("");
    expect(delivered.at - receiver!.received[0]!.at).toBeGreaterThanOrEqual(9_000);
    expect(delivered.contentType).toBe("application/vnd.docker.distribution.events.v1+json");
    expect(delivered.authorization).toBe(HOOK_SECRET);
    expect(push).toMatchObject({
      action: "push",
      target: {
        mediaType: MediaType.ociManifest,
        digest: image.manifest.digest,
        size: image.manifest.size,
        repository: REPO,
        tag: TAG,
        url: `${dev!.url}/v2/${REPO}/manifests/${image.manifest.digest}`,
      },
      request: { method: "PUT" },
      actor: { name: dev!.username },
    });
    expect(Date.now() - pushed).toBeLessThan(60_000);
    // …and logged that failure once, with the endpoint and the status.
    expect(dev!.logs().split(`notifications to ${receiver!.url} failed (status 503)`)).toHaveLength(2);

    // A tag delete and a collection right after it, without waiting in between.
    const del = await client.request("DELETE", `/v2/${REPO}/manifests/${TAG}`);
    expect(del.status, describeResponse("DELETE", TAG, del)).toBe(202);
    const gc = await client.request("POST", `/v2/${REPO}/gc?mode=untagged&grace=0`);
    expect(gc.status, describeResponse("POST", "gc", gc)).toBe(200);

    const blobs = [image.config, ...image.layers].map((b) => b.digest);
    const all = await waitForEvents(3 + blobs.length);
    expect(all.map((e) => [e.action, e.target.tag ?? e.target.digest])).toEqual([
      ["push", TAG],
      ["delete", TAG],
      ["delete", image.manifest.digest],
      ...all.slice(3).map((e) => ["delete", e.target.digest]),
    ]);
    expect(all.slice(3).map((e) => e.target.digest).sort()).toEqual([...blobs].sort());
    for (const e of all.slice(1)) {
      expect(Object.keys(e.target).sort()).toEqual(e.target.tag ? ["repository", "tag"] : ["digest", "repository"]);
      expect(e.target.repository).toBe(REPO);
      expect(e.actor).toEqual({ name: dev!.username });
    }
    // Events carry names, never credentials.
    for (const r of receiver!.received) expect(r.body).not.toContain(dev!.password);
  });
});
