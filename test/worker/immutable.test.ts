import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import type { Env } from "../../src/env";
import {
  artifactManifest,
  bytesOf,
  call,
  type CallOptions,
  type ErrorBody,
  imageManifest,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  sha256,
  uniqueName,
} from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

const RULES = "*:v*,prod/*:*,*:latest-stable";

/** A request with the immutable-tag rules configured (and any other settings given). */
function policed(path: string, options: CallOptions = {}): Promise<Response> {
  return call(path, { ...options, env: { IMMUTABLE_TAGS: RULES, ...options.env } });
}

function put(name: string, reference: string, text: string, options: CallOptions = {}, contentType = OCI_MANIFEST): Promise<Response> {
  return policed(`/v2/${name}/manifests/${reference}`, { method: "PUT", body: text, headers: { "Content-Type": contentType }, ...options });
}

async function digestOf(name: string, reference: string): Promise<string | null> {
  return (await call(`/v2/${name}/manifests/${reference}`, { method: "HEAD" })).headers.get("Docker-Content-Digest");
}

/** Expects the refusal: 409, code DENIED, a message naming the tag and the rule. */
async function expectRefused(res: Response, ...words: string[]): Promise<string> {
  expect(res.status).toBe(409);
  const body = (await res.json()) as ErrorBody;
  expect(body.errors[0]!.code).toBe("DENIED");
  for (const word of words) expect(body.errors[0]!.message).toContain(word);
  return body.errors[0]!.message;
}

/** An index of two images pushed by digest, a signature of the first, under `tag`. */
async function pushIndex(name: string, tag: string, seed: number) {
  const images = [await imageManifest(name, seed), await imageManifest(name, seed + 1)];
  for (const image of images) expect((await put(name, image.digest, image.text)).status).toBe(201);
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: images.map((image, i) => ({
      mediaType: OCI_MANIFEST,
      digest: image.digest,
      size: new TextEncoder().encode(image.text).byteLength,
      platform: { os: "linux", architecture: i === 0 ? "amd64" : "arm64" },
    })),
  });
  const digest = await sha256(index);
  expect((await put(name, tag, index, {}, OCI_INDEX)).status).toBe(201);
  const subject = { digest: images[0]!.digest, size: new TextEncoder().encode(images[0]!.text).byteLength };
  const signature = artifactManifest(subject, "application/vnd.example.signature");
  const signatureDigest = await sha256(signature);
  expect((await put(name, signatureDigest, signature)).status).toBe(201);
  return { images, digest, signatureDigest };
}

describe("immutable tags", () => {
  it("creates an immutable tag, accepts the same digest again, and refuses another one naming the tag and the rule", async () => {
    const name = uniqueName("immutable");
    const [first, second] = [await imageManifest(name, 1), await imageManifest(name, 2)];
    expect((await put(name, "v1", first.text)).status).toBe(201);
    const stored = await env.REGISTRY.head(`${name}/manifests/v1`);
    // A CI retry: the same manifest again succeeds and leaves the tag as it was.
    const again = await put(name, "v1", first.text);
    expect(again.status).toBe(201);
    expect(again.headers.get("Docker-Content-Digest")).toBe(first.digest);
    expect((await env.REGISTRY.head(`${name}/manifests/v1`))!.etag).toBe(stored!.etag);

    const message = await expectRefused(await put(name, "v1", second.text), `${name}:v1`, "IMMUTABLE_TAGS rule *:v*", first.digest, second.digest);
    expect(message).toMatch(/push under a new tag/);
    // …also as `PUT <digest>?tag=v1`, and nothing moved.
    await expectRefused(await put(name, `${second.digest}?tag=v1&tag=other`, second.text), `${name}:v1`);
    expect(await digestOf(name, "v1")).toBe(first.digest);
    // The refused push stored no tag at all (not even `other`), and a new immutable tag is fine.
    expect(await digestOf(name, "other")).toBeNull();
    expect((await put(name, "v2", second.text)).status).toBe(201);
    expect(await digestOf(name, "v2")).toBe(second.digest);
  });

  it("lets mutable tags move and be deleted as before", async () => {
    const name = uniqueName("mutable");
    const [first, second] = [await imageManifest(name, 3), await imageManifest(name, 4)];
    expect((await put(name, "main", first.text)).status).toBe(201);
    expect((await put(name, "main", second.text)).status).toBe(201);
    expect(await digestOf(name, "main")).toBe(second.digest);
    expect((await policed(`/v2/${name}/manifests/main`, { method: "DELETE" })).status).toBe(202);
  });

  it("applies the repository patterns, nested names included, and only them", async () => {
    const image = await imageManifest("prod/api", 5);
    const other = await imageManifest("prod/api", 6);
    expect((await put("prod/api", "main", image.text)).status).toBe(201);
    await expectRefused(await put("prod/api", "main", other.text), "prod/api:main", "rule prod/*:*");
    const nested = await imageManifest("prod/team/api", 5);
    const nestedOther = await imageManifest("prod/team/api", 6);
    expect((await put("prod/team/api", "any", nested.text)).status).toBe(201);
    await expectRefused(await put("prod/team/api", "any", nestedOther.text), "rule prod/*:*");
    const free = await imageManifest("production/api", 5);
    const freeOther = await imageManifest("production/api", 6);
    expect((await put("production/api", "main", free.text)).status).toBe(201);
    expect((await put("production/api", "main", freeOther.text)).status).toBe(201);
  });

  it("refuses to delete an immutable tag, and answers 404 for one that does not exist", async () => {
    const name = uniqueName("delete-tag");
    const image = await imageManifest(name, 7);
    expect((await put(name, "latest-stable", image.text)).status).toBe(201);
    await expectRefused(await policed(`/v2/${name}/manifests/latest-stable`, { method: "DELETE" }), `${name}:latest-stable`, "rule *:latest-stable", "cannot be deleted");
    expect(await digestOf(name, "latest-stable")).toBe(image.digest);
    expect((await policed(`/v2/${name}/manifests/v9`, { method: "DELETE" })).status).toBe(404);
  });

  it("refuses to delete by digest what an immutable tag reaches: its manifest, an index's children, their blobs", async () => {
    const name = uniqueName("delete-digest");
    const { images, digest, signatureDigest } = await pushIndex(name, "v1", 8);
    await expectRefused(await policed(`/v2/${name}/manifests/${digest}`, { method: "DELETE" }), `immutable tag ${name}:v1`, "rule *:v*", "points at it");
    await expectRefused(await policed(`/v2/${name}/manifests/${images[1]!.digest}`, { method: "DELETE" }), `through index ${digest}`);
    await expectRefused(await policed(`/v2/${name}/blobs/${images[0]!.blobs[1]}`, { method: "DELETE" }), `blob ${images[0]!.blobs[1]}`, `${name}:v1`);
    for (const d of [digest, ...images.map((i) => i.digest)]) expect(await digestOf(name, d)).toBe(d);
    // A signature of a release may be withdrawn; an untagged manifest and a stray blob may go.
    expect((await policed(`/v2/${name}/manifests/${signatureDigest}`, { method: "DELETE" })).status).toBe(202);
    const loose = await imageManifest(name, 20);
    expect((await put(name, loose.digest, loose.text)).status).toBe(201);
    expect((await policed(`/v2/${name}/manifests/${loose.digest}`, { method: "DELETE" })).status).toBe(202);
    const stray = await pushBlob(name, "stray");
    expect((await policed(`/v2/${name}/blobs/${stray}`, { method: "DELETE" })).status).toBe(202);
  });

  it("refuses whoever pushes: a push token is refused the same way", async () => {
    const name = uniqueName("token");
    const key = await makeKey("ES256");
    const token = await sign(key, claims(["pull", "push"]));
    const auth = { auth: `Bearer ${token}`, env: { IMMUTABLE_TAGS: RULES, JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) } };
    const [first, second] = [await imageManifest(name, 9), await imageManifest(name, 10)];
    expect((await put(name, "v1", first.text, auth)).status).toBe(201);
    await expectRefused(await put(name, "v1", second.text, auth), `${name}:v1`, "rule *:v*");
    await expectRefused(await policed(`/v2/${name}/manifests/v1`, { method: "DELETE", ...auth }), "cannot be deleted");
  });

  it("lets exactly one of two concurrent first pushes of different digests create the tag", async () => {
    const name = uniqueName("race");
    const [first, second] = [await imageManifest(name, 11), await imageManifest(name, 12)];
    const answers = await Promise.all([put(name, "v1", first.text), put(name, "v1", second.text)]);
    expect(answers.map((r) => r.status).sort()).toEqual([201, 409]);
    const winner = answers[0]!.status === 201 ? first : second;
    expect(await digestOf(name, "v1")).toBe(winner.digest);
  });

  it("records when each tag was pushed", async () => {
    const name = uniqueName("pushed");
    const image = await imageManifest(name, 13);
    const before = Date.now();
    expect((await put(name, "main", image.text)).status).toBe(201);
    const pushed = Date.parse((await env.REGISTRY.head(`${name}/manifests/main`))!.customMetadata!["r2-registry-pushed"]!);
    expect(pushed).toBeGreaterThanOrEqual(before - 1000);
    expect(pushed).toBeLessThanOrEqual(Date.now() + 1000);
  });
});

describe("immutable tags and pull-through", () => {
  afterEach(() => vi.restoreAllMocks());

  it("never blocks caching, nor following a tag that moved upstream", async () => {
    const name = uniqueName("cache");
    const images = [await upstreamImage(14), await upstreamImage(15)];
    let current = images[0]!;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      const path = new URL(request.url).pathname;
      if (path.endsWith("/manifests/v1")) {
        return new Response(request.method === "HEAD" ? null : current.text, {
          headers: { "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": current.digest, "Content-Length": String(current.text.length) },
        });
      }
      return new Response(null, { status: 404 });
    });
    const upstream = { REGISTRIES_JSON: JSON.stringify([{ registry: "https://up.example" }]), REGISTRIES_TAG_TTL: "0", IMMUTABLE_TAGS: "*:*" };
    expect((await call(`/v2/${name}/manifests/v1`, { env: upstream })).headers.get("Docker-Content-Digest")).toBe(images[0]!.digest);
    current = images[1]!;
    expect((await call(`/v2/${name}/manifests/v1`, { env: upstream })).headers.get("Docker-Content-Digest")).toBe(images[1]!.digest);
    // A client still cannot move it.
    await expectRefused(await call(`/v2/${name}/manifests/v1`, { method: "PUT", body: images[0]!.text, headers: { "Content-Type": OCI_MANIFEST }, env: upstream }), "rule *:*");
  });
});

async function upstreamImage(seed: number): Promise<{ text: string; digest: string }> {
  // Manifests only (pull-through caches a manifest without its blobs).
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: await sha256(`config ${seed}`), size: 8 },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: await sha256(bytesOf(10, seed)), size: 10 }],
  });
  return { text, digest: await sha256(text) };
}

describe("garbage collection and immutable tags", () => {
  it("keeps everything an immutable tag reaches, in both modes and from the cron trigger", async () => {
    const name = uniqueName("gc");
    const { images, digest, signatureDigest } = await pushIndex(name, "v1", 16);
    const blobs = images.flatMap((i) => i.blobs);
    for (const mode of ["untagged", "unreferenced"]) {
      const res = await policed(`/v2/${name}/gc?mode=${mode}&grace=0&report=true`, { method: "POST" });
      expect(res.status).toBe(200);
      const report = (await res.json()) as { manifests: unknown[]; blobs: unknown[] };
      expect(report.manifests).toEqual([]);
      expect(report.blobs).toEqual([]);
    }
    const cronEnv = { ...env, IMMUTABLE_TAGS: RULES, GC_MODE: "untagged", GC_GRACE_PERIOD: "0" } as Env;
    await worker.scheduled({ cron: "0 4 * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController, cronEnv);
    for (const d of [digest, signatureDigest, ...images.map((i) => i.digest)]) expect(await digestOf(name, d)).toBe(d);
    for (const blob of blobs) expect((await call(`/v2/${name}/blobs/${blob}`, { method: "HEAD" })).status).toBe(200);
  });
});

describe("immutable tags and notifications", () => {
  afterEach(() => vi.restoreAllMocks());

  it("never notifies a refused push or delete; a same-digest push is notified as a push of its tag", async () => {
    const posted: { action: string; tag?: string; digest?: string }[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const body = (await new Request(input, init).json()) as { events: { action: string; target: { tag?: string; digest?: string } }[] };
      posted.push(...body.events.map((e) => ({ action: e.action, tag: e.target.tag, digest: e.target.digest })));
      return new Response(null, { status: 202 });
    });
    const name = uniqueName("notified");
    const [first, second] = [await imageManifest(name, 21), await imageManifest(name, 22)];
    const hooked = { env: { IMMUTABLE_TAGS: RULES, NOTIFICATIONS_JSON: JSON.stringify([{ url: "https://hooks.test/registry" }]) } };
    expect((await put(name, "v1", first.text, hooked)).status).toBe(201);
    expect((await put(name, "v1", second.text, hooked)).status).toBe(409);
    expect((await put(name, "v1", first.text, hooked)).status).toBe(201);
    expect((await policed(`/v2/${name}/manifests/v1`, { method: "DELETE", ...hooked })).status).toBe(409);
    expect((await policed(`/v2/${name}/manifests/${first.digest}`, { method: "DELETE", ...hooked })).status).toBe(409);
    expect(posted).toEqual([
      { action: "push", tag: "v1", digest: first.digest },
      { action: "push", tag: "v1", digest: first.digest },
    ]);
  });
});
