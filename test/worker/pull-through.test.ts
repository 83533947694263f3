import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import type { Env } from "../../src/env";
import { clearUpstreamTokens, ProxyRegistry, Upstream } from "../../src/registry/proxy";
import { R2Registry } from "../../src/registry/r2";
import { parseChallenges } from "../../src/registry/proxy/challenge";
import { copyTee } from "../../src/registry/proxy/tee";
import {
  basic,
  bodyBytes,
  bytesOf,
  call,
  type ErrorBody,
  imageManifest,
  keysUnder,
  OCI_MANIFEST,
  ORIGIN,
  putManifest,
  RW,
  sha256,
  uniqueName,
} from "./helpers";

// ---- A scripted upstream: every fetch the Worker makes is answered here, routed by origin. ----

interface Seen {
  url: string;
  method: string;
  authorization: string | null;
}

type Route = (request: Request) => Response | Promise<Response>;

let routes: Record<string, Route> = {};
let seen: Seen[] = [];

beforeEach(() => {
  routes = {};
  seen = [];
  clearUpstreamTokens();
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    seen.push({ url: request.url, method: request.method, authorization: request.headers.get("Authorization") });
    const route = routes[new URL(request.url).origin];
    if (!route) throw new TypeError(`network connection lost: ${request.url}`);
    return route(request);
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});

interface Image {
  manifest: string;
  digest: string;
  config: { bytes: Uint8Array; digest: string };
  layer: { bytes: Uint8Array; digest: string };
}

async function image(seed: number, layerSize = 3000): Promise<Image> {
  const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", seed }));
  const layer = bytesOf(layerSize, seed);
  const configDigest = await sha256(config);
  const layerDigest = await sha256(layer);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.byteLength },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layerDigest, size: layer.byteLength }],
  });
  return { manifest, digest: await sha256(manifest), config: { bytes: config, digest: configDigest }, layer: { bytes: layer, digest: layerDigest } };
}

interface FakeOptions {
  /** Repository path on the upstream, e.g. `library/alpine`. */
  repo: string;
  image: Image;
  tags?: Record<string, Image>;
  /** Returns a 401 response when the request is not authorized. */
  guard?: (request: Request) => Response | undefined;
  /** Blobs are answered with a 307 to this origin (a CDN). */
  cdn?: string;
  /** Overrides the manifest bytes served (corruption). */
  manifestBody?: string;
  /** Overrides the blob bytes served (corruption). */
  blobBody?: (digest: string, bytes: Uint8Array) => Uint8Array;
}

/** An upstream registry holding one image under `latest` (and `tags`). */
function fakeRegistry(options: FakeOptions): Route {
  const tags: Record<string, Image> = { latest: options.image, ...options.tags };
  const images = Object.values(tags);
  return (request) => {
    const denied = options.guard?.(request);
    if (denied) return denied;
    const path = new URL(request.url).pathname;
    const base = `/v2/${options.repo}/`;
    if (!path.startsWith(base)) return new Response("not found", { status: 404 });
    const rest = path.slice(base.length);
    const head = request.method === "HEAD";
    if (rest.startsWith("manifests/")) {
      const ref = rest.slice("manifests/".length);
      const img = tags[ref] ?? images.find((i) => i.digest === ref);
      if (!img) return new Response(null, { status: 404 });
      const body = options.manifestBody ?? img.manifest;
      return new Response(head ? null : body, {
        headers: { "Content-Type": OCI_MANIFEST, "Docker-Content-Digest": img.digest, "Content-Length": String(body.length) },
      });
    }
    if (rest.startsWith("blobs/")) {
      const digest = rest.slice("blobs/".length);
      const all = images.flatMap((i) => [i.config, i.layer]);
      const blob = all.find((b) => b.digest === digest);
      if (!blob) return new Response(null, { status: 404 });
      if (options.cdn) return new Response(null, { status: 307, headers: { Location: `${options.cdn}/data/${digest}?sig=abc` } });
      const bytes = options.blobBody ? options.blobBody(digest, blob.bytes) : blob.bytes;
      return new Response(head ? null : bytes, { headers: { "Content-Length": String(blob.bytes.byteLength), "Docker-Content-Digest": digest } });
    }
    if (rest === "tags/list") return Response.json({ name: options.repo, tags: Object.keys(tags).sort() });
    return new Response(null, { status: 404 });
  };
}

/** A CDN serving blobs of images without any authentication. */
function fakeCdn(...images: Image[]): Route {
  return (request) => {
    const digest = new URL(request.url).pathname.slice("/data/".length);
    const blob = images.flatMap((i) => [i.config, i.layer]).find((b) => b.digest === digest);
    return blob ? new Response(blob.bytes, { headers: { "Content-Length": String(blob.bytes.byteLength) } }) : new Response(null, { status: 404 });
  };
}

interface TokenServer {
  route: Route;
  requests: { url: URL; authorization: string | null }[];
}

/** A token server issuing `tok-<n>` tokens valid for `expiresIn` seconds. */
function tokenServer(expiresIn = 300, requireBasic?: string): TokenServer {
  const requests: TokenServer["requests"] = [];
  return {
    requests,
    route: (request) => {
      requests.push({ url: new URL(request.url), authorization: request.headers.get("Authorization") });
      if (requireBasic && request.headers.get("Authorization") !== requireBasic) return new Response("denied", { status: 401 });
      return Response.json({ token: `tok-${requests.length}`, access_token: `tok-${requests.length}`, expires_in: expiresIn });
    },
  };
}

function bearerGuard(challenge: string): (request: Request) => Response | undefined {
  return (request) =>
    /^Bearer tok-\d+$/.test(request.headers.get("Authorization") ?? "")
      ? undefined
      : new Response(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }), { status: 401, headers: { "WWW-Authenticate": challenge } });
}

const HUB_JSON = JSON.stringify([{ registry: "https://index.docker.io/" }]);

function hubChallenge(repo: string): string {
  return `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:${repo}:pull"`;
}

/** A single-component name no other test uses (Docker Hub maps it to `library/<name>`). */
function officialName(): string {
  return `img${Math.random().toString(36).slice(2, 10)}`;
}

function pull(path: string, upstreams: string | undefined, extra: Partial<Env> = {}, init: RequestInit = {}): Promise<Response> {
  return call(path, { ...init, env: { ...(upstreams !== undefined ? { REGISTRIES_JSON: upstreams } : {}), ...extra } });
}

// ---- Tests ----

describe("WWW-Authenticate parsing", () => {
  it("reads Docker Hub's challenge", () => {
    expect(parseChallenges(hubChallenge("library/alpine"))).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull" } },
    ]);
  });

  it("takes any order, spaces after commas, quoted commas and escapes, several challenges", () => {
    const header = `Basic realm="a, b \\"c\\"" , Bearer  scope="repository:x/y:pull,push", service = svc,realm="https://t.example/token?x=1"`;
    expect(parseChallenges(header)).toEqual([
      { scheme: "basic", params: { realm: 'a, b "c"' } },
      { scheme: "bearer", params: { scope: "repository:x/y:pull,push", service: "svc", realm: "https://t.example/token?x=1" } },
    ]);
  });

  it("survives garbage", () => {
    expect(parseChallenges("")).toEqual([]);
    expect(parseChallenges(null)).toEqual([]);
    expect(parseChallenges("===,,,")).toEqual([]);
    expect(parseChallenges("Basic dXNlcjpwYXNz==")[0]?.scheme).toBe("basic");
  });
});

describe("REGISTRIES_JSON validation", () => {
  it("keeps good entries and warns once per bad one", () => {
    const config = parseConfig({
      REGISTRIES_JSON: JSON.stringify([
        { registry: "https://index.docker.io/" },
        { registry: "not a url at all" },
        { registry: "https://ghcr.io", username: "me" },
        { registry: "https://private.example/v2/team", username: "me", password_env: "UPSTREAM_PASSWORD" },
        { registry: "https://missing.example", username: "me", password_env: "NOT_SET" },
        { registry: "ftp://files.example" },
        42,
      ]),
      UPSTREAM_PASSWORD: "s3cret",
    });
    const upstreams = config.pullThrough.upstreams;
    expect(upstreams.map((u) => [u.origin, u.prefix, u.dockerHub, u.username, u.password])).toEqual([
      ["https://registry-1.docker.io", "", true, undefined, undefined],
      ["https://private.example", "team", false, "me", "s3cret"],
    ]);
    const bad = config.warnings.filter((w) => w.startsWith("REGISTRIES_JSON"));
    expect(bad).toHaveLength(5);
    expect(bad.join("\n")).toMatch(/\[2\] \(https:\/\/ghcr.io\) has a "username" but no "password_env"/);
    expect(bad.join("\n")).toMatch(/NOT_SET/);
  });

  it("maps Docker Hub's aliases and reads path prefixes", () => {
    const config = parseConfig({
      REGISTRIES_JSON: JSON.stringify([
        { registry: "docker.io" },
        { registry: "https://registry-1.docker.io" },
        { registry: "https://host.example/prefix/" },
        { registry: "http://host.example:5000/v2/" },
      ]),
    });
    expect(config.pullThrough.upstreams.map((u) => `${u.origin} ${u.prefix}`)).toEqual([
      "https://registry-1.docker.io ",
      "https://registry-1.docker.io ",
      "https://host.example prefix",
      "http://host.example:5000 ",
    ]);
  });

  it("reads namespace and fill_local, and leaves out the entries where they are bad", () => {
    const config = parseConfig({
      REGISTRIES_JSON: JSON.stringify([
        { registry: "https://a.example", namespace: "hub" },
        { registry: "https://b.example", namespace: "/mirrors/ghcr/", fill_local: true },
        { registry: "https://c.example", fill_local: false },
        { registry: "https://d.example", namespace: "Hub" },
        { registry: "https://e.example", namespace: "" },
        { registry: "https://f.example", namespace: 7 },
        { registry: "https://g.example", namespace: "a//b" },
        { registry: "https://h.example", fill_local: "yes" },
      ]),
    });
    expect(config.pullThrough.upstreams.map((u) => [u.origin, u.namespace, u.fillLocal])).toEqual([
      ["https://a.example", "hub", undefined],
      ["https://b.example", "mirrors/ghcr", true],
      ["https://c.example", undefined, undefined],
    ]);
    const bad = config.warnings.filter((w) => w.startsWith("REGISTRIES_JSON"));
    expect(bad).toHaveLength(5);
    expect(bad.filter((w) => w.includes('"namespace" must be a repository name prefix'))).toHaveLength(4);
    expect(bad.filter((w) => w.includes('"fill_local" must be true or false'))).toHaveLength(1);
  });

  it("disables pull-through on invalid JSON with one warning", () => {
    const config = parseConfig({ REGISTRIES_JSON: "[{" });
    expect(config.pullThrough.upstreams).toEqual([]);
    expect(config.warnings.some((w) => w.includes("REGISTRIES_JSON is not valid JSON"))).toBe(true);
  });
});

describe("pull-through from Docker Hub (anonymous bearer)", () => {
  it("pulls manifest and blobs through library/, follows the CDN redirect without credentials, caches a token", async () => {
    const name = officialName();
    const img = await image(11);
    const tokens = tokenServer();
    routes["https://registry-1.docker.io"] = fakeRegistry({
      repo: `library/${name}`,
      image: img,
      guard: bearerGuard(hubChallenge(`library/${name}`)),
      cdn: "https://cdn.example",
    });
    routes["https://auth.docker.io"] = tokens.route;
    routes["https://cdn.example"] = fakeCdn(img);

    const head = await pull(`/v2/${name}/manifests/latest`, HUB_JSON, {}, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Docker-Content-Digest")).toBe(img.digest);

    const manifest = await pull(`/v2/${name}/manifests/latest`, HUB_JSON);
    expect(manifest.status).toBe(200);
    expect(await manifest.text()).toBe(img.manifest);
    expect(manifest.headers.get("Content-Type")).toBe(OCI_MANIFEST);

    for (const blob of [img.config, img.layer]) {
      const res = await pull(`/v2/${name}/blobs/${blob.digest}`, HUB_JSON);
      expect(res.status).toBe(200);
      expect(res.headers.get("Docker-Content-Digest")).toBe(blob.digest);
      expect(await bodyBytes(res)).toEqual(blob.bytes);
    }

    // Token requests: one, for exactly the pull scope, anonymous.
    expect(tokens.requests).toHaveLength(1);
    expect(tokens.requests[0]!.url.searchParams.get("service")).toBe("registry.docker.io");
    expect(tokens.requests[0]!.url.searchParams.get("scope")).toBe(`repository:library/${name}:pull`);
    expect(tokens.requests[0]!.authorization).toBeNull();
    // The registry got the token; the CDN got no Authorization at all.
    const cdnRequests = seen.filter((s) => s.url.startsWith("https://cdn.example/"));
    expect(cdnRequests.length).toBeGreaterThan(0);
    expect(cdnRequests.every((s) => s.authorization === null)).toBe(true);
    expect(seen.some((s) => s.url.startsWith("https://registry-1.docker.io/v2/library/") && s.authorization === "Bearer tok-1")).toBe(true);

    // Cached: with Docker Hub gone, everything is served from R2.
    routes = {};
    const cached = await pull(`/v2/${name}/manifests/latest`, HUB_JSON);
    expect(cached.status).toBe(200);
    expect(await cached.text()).toBe(img.manifest);
    const byDigest = await pull(`/v2/${name}/manifests/${img.digest}`, HUB_JSON);
    expect(byDigest.status).toBe(200);
    for (const blob of [img.config, img.layer]) {
      const res = await pull(`/v2/${name}/blobs/${blob.digest}`, HUB_JSON);
      expect(res.status).toBe(200);
      expect(await bodyBytes(res)).toEqual(blob.bytes);
    }
    // …and even without REGISTRIES_JSON.
    expect((await pull(`/v2/${name}/blobs/${img.layer.digest}`, undefined)).status).toBe(200);
  });

  it("serves a range of an uncached blob cut from the whole answer, without copying it (a later whole pull does)", async () => {
    const name = officialName();
    const img = await image(12);
    // This upstream ignores Range and answers the whole blob.
    routes["https://registry-1.docker.io"] = fakeRegistry({ repo: `library/${name}`, image: img });
    const res = await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON, {}, { headers: { Range: "bytes=10-19" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 10-19/${img.layer.bytes.byteLength}`);
    expect(await bodyBytes(res)).toEqual(img.layer.bytes.slice(10, 20));
    expect((await pull(`/v2/${name}/blobs/${img.layer.digest}`, undefined)).status).toBe(404);
    // A whole pull caches it: it is then served without REGISTRIES_JSON.
    expect(await bodyBytes(await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON))).toEqual(img.layer.bytes);
    const cached = await pull(`/v2/${name}/blobs/${img.layer.digest}`, undefined);
    expect(cached.status).toBe(200);
    expect(await bodyBytes(cached)).toEqual(img.layer.bytes);
  });

  it("passes an upstream's 206 answer to a range request through", async () => {
    const name = officialName();
    const img = await image(14, 5000);
    const asked: (string | null)[] = [];
    routes["https://registry-1.docker.io"] = (request) => {
      const range = request.headers.get("Range");
      asked.push(range);
      const match = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
      if (!match) return new Response(img.layer.bytes);
      const [start, end] = [Number(match[1]), Number(match[2])];
      return new Response(img.layer.bytes.slice(start, end + 1), {
        status: 206,
        headers: { "Content-Range": `bytes ${start}-${end}/${img.layer.bytes.byteLength}` },
      });
    };
    const res = await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON, {}, { headers: { Range: "bytes=4000-4099" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 4000-4099/${img.layer.bytes.byteLength}`);
    expect(await bodyBytes(res)).toEqual(img.layer.bytes.slice(4000, 4100));
    expect(asked).toEqual(["bytes=4000-4099"]);
  });

  it("fetches a new token once the cached one has expired", async () => {
    const name = officialName();
    const img = await image(13);
    const tokens = tokenServer(5); // shorter than the safety margin: never reused
    routes["https://registry-1.docker.io"] = fakeRegistry({ repo: `library/${name}`, image: img, guard: bearerGuard(hubChallenge(`library/${name}`)) });
    routes["https://auth.docker.io"] = tokens.route;
    await pull(`/v2/${name}/blobs/${img.config.digest}`, HUB_JSON);
    await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON);
    expect(tokens.requests).toHaveLength(2);
  });

  it("fetches a new token when the clock passes its expiry", async () => {
    const name = officialName();
    const img = await image(14);
    const tokens = tokenServer(300);
    routes["https://registry-1.docker.io"] = fakeRegistry({ repo: `library/${name}`, image: img, guard: bearerGuard(hubChallenge(`library/${name}`)) });
    routes["https://auth.docker.io"] = tokens.route;
    const now = Date.now();
    const spy = vi.spyOn(Date, "now").mockReturnValue(now);
    await pull(`/v2/${name}/blobs/${img.config.digest}`, HUB_JSON);
    spy.mockReturnValue(now + 200_000);
    await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON);
    expect(tokens.requests).toHaveLength(1);
    spy.mockReturnValue(now + 301_000);
    await pull(`/v2/${name}/manifests/${img.digest}`, HUB_JSON);
    expect(tokens.requests).toHaveLength(2);
  });
});

describe("pull-through with credentials", () => {
  it("GHCR-style bearer: the token server gets Basic credentials and the pull scope only", async () => {
    const local = uniqueName("gh");
    const img = await image(21);
    const tokens = tokenServer(300, basic("robot", "ghp-secret"));
    routes["https://ghcr.io"] = (request) => {
      if (new URL(request.url).pathname === "/token") return tokens.route(request);
      return fakeRegistry({
        repo: local,
        image: img,
        guard: bearerGuard(`Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:${local}:pull"`),
      })(request);
    };
    const upstreams = JSON.stringify([{ registry: "https://ghcr.io", username: "robot", password_env: "GHCR_TOKEN" }]);
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams, { GHCR_TOKEN: "ghp-secret" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(img.manifest);
    expect(tokens.requests).toHaveLength(1);
    expect(tokens.requests[0]!.url.searchParams.get("scope")).toBe(`repository:${local}:pull`);
    expect(tokens.requests[0]!.url.searchParams.get("service")).toBe("ghcr.io");
  });

  it("Basic auth with a path prefix (`https://host/v2/mirror`) builds /v2/mirror/<name>/…", async () => {
    const local = uniqueName("basic");
    const img = await image(22);
    const auth = basic("puller", "pw");
    routes["https://basic.example"] = fakeRegistry({
      repo: `mirror/${local}`,
      image: img,
      guard: (request) =>
        request.headers.get("Authorization") === auth ? undefined : new Response(null, { status: 401, headers: { "WWW-Authenticate": 'Basic realm="Registry Realm"' } }),
    });
    const upstreams = JSON.stringify([{ registry: "https://basic.example/v2/mirror", username: "puller", password_env: "MIRROR_PASSWORD" }]);
    const res = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams, { MIRROR_PASSWORD: "pw" });
    expect(res.status).toBe(200);
    expect(await bodyBytes(res)).toEqual(img.layer.bytes);
    expect(seen.some((s) => s.url === `https://basic.example/v2/mirror/${local}/blobs/${img.layer.digest}` && s.authorization === auth)).toBe(true);
    // Wrong password: 401 upstream, so a 502 naming the upstream (not a 404, not a 500), and
    // never the password.
    const other = uniqueName("basic");
    const denied = await pull(`/v2/${other}/manifests/latest`, upstreams, { MIRROR_PASSWORD: "wrong-pw-1234" });
    expect(denied.status).toBe(502);
    const text = await denied.text();
    expect(text).toContain("https://basic.example/v2/mirror");
    expect(text).toContain("HTTP 401");
    expect(text).not.toContain("wrong-pw-1234");
    expect(text).not.toContain(btoa("puller:wrong-pw-1234"));
  });
});

/** The error code and message of an OCI error answer. */
async function failure(response: Response): Promise<{ status: number; code?: string; message?: string }> {
  const body = (await response.json()) as ErrorBody;
  return { status: response.status, code: body.errors[0]?.code, message: body.errors[0]?.message };
}

describe("upstream failures never cache bad content, and answer an error naming the upstream", () => {
  it("a manifest whose bytes do not match Docker-Content-Digest is neither served nor cached", async () => {
    const local = uniqueName("bad");
    const img = await image(31);
    const upstreams = JSON.stringify([{ registry: "https://bad.example" }]);
    routes["https://bad.example"] = fakeRegistry({ repo: local, image: img, manifestBody: img.manifest.replace("tar+gzip", "tar+zstd") });
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams);
    expect(await failure(res)).toMatchObject({ status: 502, code: "UNAVAILABLE", message: expect.stringContaining("https://bad.example") });
    expect((await pull(`/v2/${local}/manifests/${img.digest}`, upstreams)).status).toBe(502);
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });

  it("a corrupted or truncated blob is never cached", async () => {
    const local = uniqueName("bad");
    const img = await image(32);
    const upstreams = JSON.stringify([{ registry: "https://bad.example" }]);
    routes["https://bad.example"] = fakeRegistry({
      repo: local,
      image: img,
      blobBody: (digest, bytes) => {
        const copy = bytes.slice();
        if (digest === img.layer.digest) copy[7] = copy[7]! ^ 0xff; // flipped bits, right length
        return digest === img.config.digest ? copy.slice(0, 10) : copy; // truncated config
      },
    });
    const layer = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    await layer.arrayBuffer().catch(() => undefined);
    const config = await pull(`/v2/${local}/blobs/${img.config.digest}`, upstreams);
    await config.arrayBuffer().catch(() => undefined);
    expect((await pull(`/v2/${local}/blobs/${img.layer.digest}`, undefined)).status).toBe(404);
    expect((await pull(`/v2/${local}/blobs/${img.config.digest}`, undefined)).status).toBe(404);
    expect((await keysUnder(`${local}/`)).filter((k) => k.includes("/blobs/"))).toEqual([]);
  });

  it("an upstream that is down, answers 500 or garbage fails the request with a 502 naming it", async () => {
    const local = uniqueName("down");
    const img = await image(33);
    const digest = img.layer.digest;
    // Down (connection error).
    const down = JSON.stringify([{ registry: "https://down.example" }]);
    for (const path of [`manifests/latest`, `manifests/${img.digest}`, `blobs/${digest}`, `tags/list`]) {
      const res = await pull(`/v2/${local}/${path}`, down);
      expect(await failure(res), path).toMatchObject({ status: 502, code: "UNAVAILABLE", message: expect.stringContaining("upstream https://down.example failed") });
    }
    expect((await pull(`/v2/${local}/manifests/latest`, down, {}, { method: "HEAD" })).status).toBe(502);
    // What a push asks before uploading (HEAD of a blob or a manifest by digest) is a miss: 404.
    expect((await pull(`/v2/${local}/blobs/${digest}`, down, {}, { method: "HEAD" })).status).toBe(404);
    expect((await pull(`/v2/${local}/manifests/${img.digest}`, down, {}, { method: "HEAD" })).status).toBe(404);
    // 500s and garbage.
    routes["https://err.example"] = () => new Response("oops", { status: 500 });
    routes["https://junk.example"] = (request) =>
      new URL(request.url).pathname.endsWith("/tags/list")
        ? new Response("<html>", { headers: { "Content-Type": "application/json" } })
        : new Response("<html>not a manifest</html>", { headers: { "Content-Type": "text/html", "Content-Length": "x" } });
    for (const registry of ["https://err.example", "https://junk.example"]) {
      const upstreams = JSON.stringify([{ registry }]);
      expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).status).toBe(502);
      expect((await pull(`/v2/${local}/blobs/${digest}`, upstreams, {}, { method: "HEAD" })).status).toBe(404);
      expect(await failure(await pull(`/v2/${local}/tags/list`, upstreams))).toMatchObject({ status: 502, message: expect.stringContaining(registry) });
    }
    // A token server that fails.
    routes["https://tok.example"] = (request) =>
      new URL(request.url).pathname === "/token"
        ? new Response("nope", { status: 503 })
        : new Response(null, { status: 401, headers: { "WWW-Authenticate": 'Bearer realm="https://tok.example/token"' } });
    const res = await pull(`/v2/${local}/manifests/latest`, JSON.stringify([{ registry: "https://tok.example" }]));
    expect(await failure(res)).toMatchObject({ status: 502, message: expect.stringContaining("token request") });
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });

  it("a slow upstream times out: 504 within the bound", async () => {
    const local = uniqueName("slow");
    routes["https://slow.example"] = (request) =>
      new Promise<Response>((_, reject) => request.signal.addEventListener("abort", () => reject(new Error("aborted"))));
    const upstreams = JSON.stringify([{ registry: "https://slow.example" }]);
    const started = Date.now();
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams, { REGISTRIES_TIMEOUT: "0.2" });
    expect(await failure(res)).toMatchObject({ status: 504, code: "UNAVAILABLE", message: expect.stringContaining("https://slow.example") });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("an upstream's 429 is passed on with its Retry-After", async () => {
    const local = uniqueName("busy");
    routes["https://busy.example"] = () => new Response("slow down", { status: 429, headers: { "Retry-After": "30" } });
    const res = await pull(`/v2/${local}/manifests/latest`, JSON.stringify([{ registry: "https://busy.example" }]));
    expect(res.headers.get("Retry-After")).toBe("30");
    expect(await failure(res)).toMatchObject({ status: 429, code: "TOOMANYREQUESTS" });
  });
});

describe("only a 404 moves on to the next upstream", () => {
  const upstreams = JSON.stringify([{ registry: "https://one.example" }, { registry: "https://two.example" }]);

  it("a 404 from the first lets the second answer", async () => {
    const local = uniqueName("second");
    const img = await image(34);
    routes["https://one.example"] = () => new Response(null, { status: 404 });
    routes["https://two.example"] = fakeRegistry({ repo: local, image: img, tags: { v1: img } });
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams);
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(img.digest);
    const blob = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    expect(await bodyBytes(blob)).toEqual(img.layer.bytes);
    const tags = await pull(`/v2/${uniqueName("second")}/tags/list`, upstreams);
    expect(tags.status).toBe(404); // neither has that repository
  });

  it("a public upstream that answers 401 to a fresh anonymous token for a name it lacks (as Docker Hub does) is a miss: the second answers", async () => {
    const local = uniqueName("hubmiss");
    const img = await image(37);
    routes["https://one.example"] = (request) =>
      new URL(request.url).pathname === "/token"
        ? Response.json({ token: "anon", expires_in: 300 })
        : new Response(JSON.stringify({ errors: [{ code: "UNAUTHORIZED" }] }), {
            status: 401,
            headers: { "WWW-Authenticate": 'Bearer realm="https://one.example/token",service="one"' },
          });
    routes["https://two.example"] = fakeRegistry({ repo: local, image: img });
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams);
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(img.digest);
    // Alone, it answers 404 (the name is nowhere), not 502.
    const alone = await pull(`/v2/${uniqueName("hubmiss")}/manifests/latest`, JSON.stringify([{ registry: "https://one.example" }]));
    expect(alone.status).toBe(404);
    // With credentials configured, the same 401 is an error: a private upstream that refuses is
    // never passed over for the next one.
    const private_ = JSON.stringify([{ registry: "https://one.example", username: "u", password_env: "UP_PASSWORD" }, { registry: "https://two.example" }]);
    const refused = await pull(`/v2/${local}-private/manifests/latest`, private_, { UP_PASSWORD: "p" });
    expect(await failure(refused)).toMatchObject({ status: 502 });
  });

  it("a first upstream that answers 500, is down or times out does not let the second answer", async () => {
    const local = uniqueName("first");
    const img = await image(35);
    routes["https://two.example"] = fakeRegistry({ repo: local, image: img });
    const cases: [string, Route | undefined, number][] = [
      ["500", () => new Response("oops", { status: 500 }), 502],
      ["down", undefined, 502],
      ["slow", (request) => new Promise<Response>((_, reject) => request.signal.addEventListener("abort", () => reject(new Error("aborted")))), 504],
    ];
    for (const [label, route, status] of cases) {
      if (route) routes["https://one.example"] = route;
      else delete routes["https://one.example"];
      seen = [];
      for (const path of [`manifests/latest`, `manifests/${img.digest}`, `blobs/${img.layer.digest}`, `tags/list`]) {
        const res = await pull(`/v2/${local}/${path}`, upstreams, { REGISTRIES_TIMEOUT: "0.2" });
        expect(await failure(res), `${label} ${path}`).toMatchObject({ status, message: expect.stringContaining("upstream https://one.example failed") });
      }
      // A HEAD of a blob is a miss, and does not ask the second either.
      expect((await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams, { REGISTRIES_TIMEOUT: "0.2" }, { method: "HEAD" })).status).toBe(404);
      expect(seen.filter((s) => s.url.startsWith("https://two.example/")), label).toEqual([]);
    }
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });
});

describe("upstream bodies are bounded", () => {
  /** A body of `total` bytes made 1 MiB at a time as it is read; `made()` says how much was. */
  function lazyBody(total: number): { body: ReadableStream<Uint8Array>; made: () => number } {
    let made = 0;
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (made >= total) return controller.close();
          made += chunk.byteLength;
          controller.enqueue(chunk.slice());
        },
      },
      { highWaterMark: 0 },
    );
    return { body, made: () => made };
  }

  it("a 50 MB tag list is refused after 4 MiB, not buffered whole; a declared one is not read at all", async () => {
    const local = uniqueName("tags");
    let last: { made: () => number } | undefined;
    let declared = false;
    routes["https://big.example"] = () => {
      const lazy = lazyBody(50_000_000);
      last = lazy;
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (declared) headers["Content-Length"] = "50000000";
      return new Response(lazy.body, { headers });
    };
    const upstreams = JSON.stringify([{ registry: "https://big.example" }]);
    const res = await pull(`/v2/${local}/tags/list`, upstreams);
    expect(await failure(res)).toMatchObject({ status: 502, code: "UNAVAILABLE", message: expect.stringMatching(/tag list is larger than 4194304 bytes/) });
    expect(last!.made()).toBeLessThanOrEqual(6 * 1024 * 1024);
    declared = true;
    const again = await pull(`/v2/${local}/tags/list`, upstreams);
    expect(await failure(again)).toMatchObject({ status: 502, message: expect.stringMatching(/larger than/) });
    expect(last!.made()).toBeLessThanOrEqual(1024 * 1024);
  });

  it("a token answer over 1 MiB is refused", async () => {
    const local = uniqueName("tok");
    let made: (() => number) | undefined;
    routes["https://tok.example"] = (request) => {
      if (new URL(request.url).pathname !== "/token") {
        return new Response(null, { status: 401, headers: { "WWW-Authenticate": 'Bearer realm="https://tok.example/token"' } });
      }
      const lazy = lazyBody(50_000_000);
      made = lazy.made;
      return new Response(lazy.body, { headers: { "Content-Type": "application/json" } });
    };
    const res = await pull(`/v2/${local}/manifests/latest`, JSON.stringify([{ registry: "https://tok.example" }]));
    expect(await failure(res)).toMatchObject({ status: 502, message: expect.stringMatching(/token answer .* is larger than 1048576 bytes/) });
    expect(made!()).toBeLessThanOrEqual(3 * 1024 * 1024);
  });

  it("a manifest answered as text/html (a login page, a captive portal) is refused and nothing is cached", async () => {
    const local = uniqueName("html");
    const img = await image(36);
    // The right bytes even: the Content-Type alone says this is not the registry answering.
    routes["https://portal.example"] = (request) => {
      const response = fakeRegistry({ repo: local, image: img })(request);
      if (!new URL(request.url).pathname.includes("/manifests/")) return response;
      return new Response(img.manifest, { headers: { "Content-Type": "text/html; charset=utf-8", "Docker-Content-Digest": img.digest } });
    };
    const upstreams = JSON.stringify([{ registry: "https://portal.example" }]);
    for (const ref of ["latest", img.digest]) {
      const res = await pull(`/v2/${local}/manifests/${ref}`, upstreams);
      expect(await failure(res)).toMatchObject({ status: 502, message: expect.stringContaining("text/html") });
    }
    expect(await keysUnder(`${local}/`)).toEqual([]);
    expect(await keysUnder(`_repositories/${local}`)).toEqual([]);
  });
});

describe("namespaces", () => {
  it("a namespaced upstream serves ns/library/x as library/x, stored under the local name, and never serves library/x", async () => {
    const name = officialName();
    const img = await image(81);
    routes["https://ns.example"] = fakeRegistry({ repo: `library/${name}`, image: img });
    const upstreams = JSON.stringify([{ registry: "https://ns.example", namespace: "ns" }]);
    const res = await pull(`/v2/ns/library/${name}/manifests/latest`, upstreams);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(img.manifest);
    const blob = await pull(`/v2/ns/library/${name}/blobs/${img.layer.digest}`, upstreams);
    expect(await bodyBytes(blob)).toEqual(img.layer.bytes);
    expect(seen.every((s) => s.url.startsWith(`https://ns.example/v2/library/${name}/`))).toBe(true);
    const tags = await pull(`/v2/ns/library/${name}/tags/list`, undefined);
    expect(await tags.json()).toEqual({ name: `ns/library/${name}`, tags: ["latest"] });
    expect(await keysUnder(`ns/library/${name}/blobs/`)).toEqual([`ns/library/${name}/blobs/${img.layer.digest}`]);

    // Names outside the namespace never go to it.
    seen = [];
    for (const path of [`library/${name}/manifests/latest`, `library/${name}/blobs/${img.layer.digest}`, `library/${name}/tags/list`, `${name}/manifests/latest`, `ns/manifests/latest`]) {
      expect((await pull(`/v2/${path}`, upstreams)).status, path).toBe(404);
    }
    expect(seen).toEqual([]);
    expect(await keysUnder(`library/${name}/`)).toEqual([]);
  });

  it("routes by the longest namespace; names under none go to the entries without one", async () => {
    const name = officialName();
    const [a, b, c] = [await image(82), await image(83), await image(84)];
    routes["https://hub.example"] = fakeRegistry({ repo: `library/${name}`, image: a });
    routes["https://team.example"] = fakeRegistry({ repo: `library/${name}`, image: b });
    routes["https://plain.example"] = fakeRegistry({ repo: `library/${name}`, image: c });
    const upstreams = JSON.stringify([
      { registry: "https://hub.example", namespace: "hub" },
      { registry: "https://team.example", namespace: "hub/team" },
      { registry: "https://plain.example" },
    ]);
    const digestOf = async (path: string) => (await pull(`/v2/${path}/manifests/latest`, upstreams)).headers.get("Docker-Content-Digest");
    expect(await digestOf(`hub/library/${name}`)).toBe(a.digest);
    expect(await digestOf(`hub/team/library/${name}`)).toBe(b.digest);
    expect(await digestOf(`library/${name}`)).toBe(c.digest);
    // A 404 in a namespace never reaches the entries without one.
    seen = [];
    expect((await pull(`/v2/hub/other/manifests/latest`, upstreams)).status).toBe(404);
    expect(seen.map((s) => new URL(s.url).origin)).toEqual(["https://hub.example"]);
  });

  it("a namespaced Docker Hub entry maps dockerhub/alpine to library/alpine", () => {
    const config = parseConfig({ REGISTRIES_JSON: JSON.stringify([{ registry: "docker.io", namespace: "dockerhub/" }]) });
    const hub = new Upstream(config.pullThrough.upstreams[0]!);
    expect(hub.config.namespace).toBe("dockerhub");
    expect(hub.repository("dockerhub/alpine")).toBe("library/alpine");
    expect(hub.repository("dockerhub/bitnami/redis")).toBe("bitnami/redis");
  });
});

describe("repositories holding pushes are not filled from upstreams", () => {
  const upstreams = JSON.stringify([{ registry: "https://up.example" }]);

  it("a repository with a pushed manifest: its tags and blobs from the upstream are not fetched", async () => {
    const local = uniqueName("team");
    const own = await imageManifest(local, 91); // pushed without pull-through configured
    expect((await putManifest(local, "v1", own.text)).status).toBe(201);
    const theirs = await image(92);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: theirs, tags: { "1.5": theirs } });
    seen = [];
    expect((await pull(`/v2/${local}/manifests/1.5`, upstreams)).status).toBe(404);
    expect((await pull(`/v2/${local}/manifests/${theirs.digest}`, upstreams, {}, { method: "HEAD" })).status).toBe(404);
    expect((await pull(`/v2/${local}/blobs/${theirs.layer.digest}`, upstreams)).status).toBe(404);
    expect(await (await pull(`/v2/${local}/tags/list`, upstreams)).json()).toEqual({ name: local, tags: ["v1"] });
    expect(seen).toEqual([]);
    // Its own tag is served as ever.
    expect((await pull(`/v2/${local}/manifests/v1`, upstreams)).headers.get("Docker-Content-Digest")).toBe(own.digest);
    // …unless the entry says fill_local.
    const fill = JSON.stringify([{ registry: "https://up.example", fill_local: true }]);
    expect((await pull(`/v2/${local}/manifests/1.5`, fill)).headers.get("Docker-Content-Digest")).toBe(theirs.digest);
  });

  it("a repository cached from an upstream keeps filling until something is pushed into it", async () => {
    const local = uniqueName("cache");
    const [v1, v2, v3, mine] = [await image(93), await image(94), await image(95), await image(96)];
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v1, tags: { v1, v2, v3 } });
    expect((await pull(`/v2/${local}/manifests/v1`, upstreams)).status).toBe(200);
    expect((await env.REGISTRY.head(`_repositories/${local}`))?.customMetadata).toEqual({ "r2-registry-cached": "true" });
    expect((await pull(`/v2/${local}/manifests/v2`, upstreams)).status).toBe(200);
    // A push makes it the team's.
    for (const blob of [mine.config, mine.layer]) {
      expect((await pull(`/v2/${local}/blobs/uploads/?digest=${blob.digest}`, upstreams, {}, { method: "POST", body: blob.bytes })).status).toBe(201);
    }
    expect((await pull(`/v2/${local}/manifests/mine`, upstreams, {}, { method: "PUT", body: mine.manifest, headers: { "Content-Type": OCI_MANIFEST } })).status).toBe(201);
    const marker = await env.REGISTRY.head(`_repositories/${local}`);
    expect(marker).not.toBeNull();
    expect(marker!.customMetadata?.["r2-registry-cached"]).toBeUndefined();
    seen = [];
    expect((await pull(`/v2/${local}/manifests/v3`, upstreams)).status).toBe(404);
    // Cached tags stay, and are not re-checked upstream any more.
    expect((await pull(`/v2/${local}/manifests/v1`, upstreams, { REGISTRIES_TAG_TTL: "0" })).status).toBe(200);
    expect(seen).toEqual([]);
  });

  it("a repository written by serverless-registry (manifests, no catalog marker) counts as pushed", async () => {
    const local = uniqueName("old");
    const own = await image(97);
    await env.REGISTRY.put(`${local}/manifests/v1`, own.manifest, { httpMetadata: { contentType: OCI_MANIFEST } });
    const theirs = await image(98);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: theirs });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).status).toBe(404);
    expect(seen).toEqual([]);
  });
});

describe("pull-through caching", () => {
  it("lists an upstream's tags when the repository is unknown locally", async () => {
    const local = uniqueName("tags");
    const img = await image(41);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img, tags: { v1: img, v2: img } });
    const res = await pull(`/v2/${local}/tags/list`, JSON.stringify([{ registry: "https://up.example" }]));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: local, tags: ["latest", "v1", "v2"] });
  });

  it("two concurrent pulls of an uncached blob both get the bytes; one copy ends up stored", async () => {
    const local = uniqueName("race");
    const img = await image(42, 200_000);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const [a, b] = await Promise.all([
      pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams),
      pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams),
    ]);
    expect(await sha256(await bodyBytes(a))).toBe(img.layer.digest);
    expect(await sha256(await bodyBytes(b))).toBe(img.layer.digest);
    routes = {};
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    expect(cached.status).toBe(200);
    expect(await sha256(await bodyBytes(cached))).toBe(img.layer.digest);
    expect((await keysUnder(`${local}/blobs/`)).length).toBe(1);
  });

  it("LOG_R2_OPERATIONS counts the copy a pull leaves to finish in the background", async () => {
    const local = uniqueName("metered");
    const img = await image(43);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    // Read the body as a client does, then let the background work (the copy, and the count of
    // what the streamed body read) finish.
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const env2 = { ...env, REGISTRIES_JSON: JSON.stringify([{ registry: "https://up.example" }]), LOG_R2_OPERATIONS: "true" } as Env;
    const res = await worker.fetch(request, env2, ctx);
    expect(await sha256(await bodyBytes(res))).toBe(img.layer.digest);
    await waitOnExecutionContext(ctx);
    const line = log.mock.calls.map(([message]) => String(message)).find((m) => m.includes(`R2 operations for GET /v2/${local}/blobs/`));
    expect(line).toBeDefined();
    // The local miss is a read; the put of the cached copy happens after the answer.
    expect(Number(/class A (\d+)/.exec(line!)?.[1]), line).toBeGreaterThan(0);
  });

  it("keeps a cached tag for good by default, even when it moves upstream", async () => {
    const local = uniqueName("ttl");
    const [v1, v2] = [await image(43), await image(44)];
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v1 });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).headers.get("Docker-Content-Digest")).toBe(v1.digest);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v2 });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).headers.get("Docker-Content-Digest")).toBe(v1.digest);
  });

  it("re-checks a cached tag after REGISTRIES_TAG_TTL and follows it when it moved", async () => {
    const local = uniqueName("ttl");
    const [v1, v2] = [await image(45), await image(46)];
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const ttl = { REGISTRIES_TAG_TTL: "0" };
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v1 });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams, ttl)).headers.get("Docker-Content-Digest")).toBe(v1.digest);
    // Unchanged upstream: a HEAD, no GET.
    seen = [];
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams, ttl)).headers.get("Docker-Content-Digest")).toBe(v1.digest);
    expect(seen.map((s) => s.method)).toEqual(["HEAD"]);
    // Moved upstream.
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v2 });
    const moved = await pull(`/v2/${local}/manifests/latest`, upstreams, ttl);
    expect(moved.headers.get("Docker-Content-Digest")).toBe(v2.digest);
    expect(await moved.text()).toBe(v2.manifest);
    // Upstream gone: the cached (new) tag is served.
    routes = {};
    const head = await pull(`/v2/${local}/manifests/latest`, upstreams, ttl, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Docker-Content-Digest")).toBe(v2.digest);
    // A per-entry tag_ttl works too; a tag pushed locally is never re-checked.
    expect(await env.REGISTRY.head(`_pullthrough/tags/${local}/latest`)).not.toBeNull();
  });

  it("does not touch pushes, and local content wins over upstreams", async () => {
    const local = uniqueName("local");
    const img = await image(47);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const start = await pull(`/v2/${local}/blobs/uploads/`, upstreams, {}, { method: "POST" });
    expect(start.status).toBe(202);
    expect(seen).toEqual([]);
  });
});

describe("the client-first tee", () => {
  function chunks(count: number, size: number): ReadableStream<Uint8Array> {
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === count) return controller.close();
        controller.enqueue(bytesOf(size, ++sent));
      },
    });
  }

  async function drain(stream: ReadableStream<Uint8Array>, onChunk?: () => void): Promise<number> {
    const reader = stream.getReader();
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return total;
      total += value.byteLength;
      onChunk?.();
    }
  }

  it("never holds the client back: a copy more than the lag behind is abandoned, the client reads on", async () => {
    const tee = copyTee(chunks(20, 1000), 3000);
    expect(await drain(tee.client)).toBe(20_000); // nobody reads the copy
    await expect(drain(tee.copy)).rejects.toThrow("the copy fell more than 3000 bytes behind the client");
    expect(await tee.clientEnd).toBe("ended");
  });

  it("holds the copy back while the client is the lag behind it", async () => {
    const tee = copyTee(chunks(20, 1000), 3000);
    let copied = 0;
    const copyDone = drain(tee.copy, () => (copied += 1000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(copied).toBeLessThanOrEqual(5000);
    expect(await drain(tee.client)).toBe(20_000);
    expect(await copyDone).toBe(20_000);
  });

  it("a client that goes away lets the copy read alone, or abandon", async () => {
    const tee = copyTee(chunks(20, 1000), 1000);
    await tee.client.cancel();
    expect(await tee.clientEnd).toBe("cancelled");
    expect(await drain(tee.copy)).toBe(20_000);
    const other = copyTee(chunks(20, 1000), 1000);
    await other.client.cancel();
    other.abandon(new Error("the client went away"));
    await expect(drain(other.copy)).rejects.toThrow("the client went away");
  });

  it("passes a source error to both branches", async () => {
    let n = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (++n > 3) controller.error(new Error("connection reset"));
        else controller.enqueue(new Uint8Array(10));
      },
    });
    const tee = copyTee(source, 1000);
    await expect(drain(tee.client)).rejects.toThrow("connection reset");
    await expect(drain(tee.copy)).rejects.toThrow("connection reset");
    expect(await tee.clientEnd).toBe("failed");
  });
});

describe("large blobs", () => {
  it("streams and caches a blob larger than an upload part (R2 checks its digest as it stores it)", async () => {
    const local = uniqueName("big");
    const img = await image(51, 12 * 1024 * 1024);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    // As a real client does, read the body while the copy into R2 runs (`call` would wait for the
    // copy first, which waits for this reader: the tee never buffers the whole blob).
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const res = await worker.fetch(request, { ...env, REGISTRIES_JSON: upstreams } as Env, ctx);
    expect(res.status).toBe(200);
    expect(await sha256(await bodyBytes(res))).toBe(img.layer.digest);
    await waitOnExecutionContext(ctx);
    routes = {};
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    expect(cached.status).toBe(200);
    expect(cached.headers.get("Content-Length")).toBe(String(12 * 1024 * 1024));
    expect(await sha256(await bodyBytes(cached))).toBe(img.layer.digest);
  });
  it("streams a blob an upstream sends without its length at once, and does not copy it (it could not be written in one put)", async () => {
    const local = uniqueName("big");
    const img = await image(52, 12 * 1024 * 1024 + 5);
    // No Content-Length: the body is a stream of 1 MiB chunks.
    routes["https://up.example"] = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            for (let i = 0; i < img.layer.bytes.byteLength; i += 1024 * 1024) controller.enqueue(img.layer.bytes.slice(i, i + 1024 * 1024));
            controller.close();
          },
        }),
      );
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const res = await worker.fetch(request, { ...env, REGISTRIES_JSON: upstreams } as Env, ctx);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBeNull();
    expect(await sha256(await bodyBytes(res))).toBe(img.layer.digest);
    await waitOnExecutionContext(ctx);
    expect((await pull(`/v2/${local}/blobs/${img.layer.digest}`, undefined)).status).toBe(404);
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });

  it("does not cache a blob an upstream sends without its length when its bytes do not match the digest", async () => {
    const local = uniqueName("big");
    const img = await image(53, 2 * 1024 * 1024);
    const wrong = bytesOf(2 * 1024 * 1024, 999);
    routes["https://up.example"] = () => new Response(new Response(wrong).body!.pipeThrough(new TransformStream()));
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const res = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    await bodyBytes(res).catch(() => undefined);
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, undefined);
    expect(cached.status).toBe(404);
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });
});

describe("pushes with pull-through configured", () => {
  it("checks a pushed manifest's references locally only: an upstream's blob does not count", async () => {
    const local = uniqueName("push");
    const img = await image(61);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const other = img.manifest.replace("tar+gzip", "tar");
    const res = await pull(`/v2/${local}/manifests/v9`, upstreams, {}, { method: "PUT", body: other, headers: { "Content-Type": OCI_MANIFEST } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: { code: string }[] }).errors[0]?.code).toBe("MANIFEST_BLOB_UNKNOWN");
    expect(seen).toEqual([]);
  });
});

describe("a tag pushed over a pulled-through one", () => {
  it("is not re-checked against the upstream afterwards", async () => {
    const local = uniqueName("own");
    const [v1, v2] = [await image(71), await image(72)];
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const ttl = { REGISTRIES_TAG_TTL: "0" };
    routes["https://up.example"] = fakeRegistry({ repo: local, image: v1 });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams, ttl)).status).toBe(200);
    // Push v2 (its blobs first) under the same tag.
    for (const blob of [v2.config, v2.layer]) {
      const put = await pull(`/v2/${local}/blobs/uploads/?digest=${blob.digest}`, upstreams, ttl, { method: "POST", body: blob.bytes });
      expect(put.status).toBe(201);
    }
    const pushed = await pull(`/v2/${local}/manifests/latest`, upstreams, ttl, { method: "PUT", body: v2.manifest, headers: { "Content-Type": OCI_MANIFEST } });
    expect(pushed.status).toBe(201);
    seen = [];
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams, ttl);
    expect(res.headers.get("Docker-Content-Digest")).toBe(v2.digest);
    expect(seen).toEqual([]);
  });
});

describe("a reference that is neither a tag nor a digest", () => {
  it("is 404 MANIFEST_UNKNOWN without asking any upstream, even one that would answer it", async () => {
    const local = uniqueName("badref");
    const img = await image(81);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img, tags: { ".INVALID_MANIFEST_NAME": img } });
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    for (const reference of [".INVALID_MANIFEST_NAME", "-dash"]) {
      const get = await pull(`/v2/${local}/manifests/${reference}`, upstreams);
      expect(get.status, reference).toBe(404);
      expect(((await get.json()) as { errors: { code: string }[] }).errors[0]?.code, reference).toBe("MANIFEST_UNKNOWN");
      expect((await pull(`/v2/${local}/manifests/${reference}`, upstreams, {}, { method: "HEAD" })).status, reference).toBe(404);
    }
    expect(seen).toEqual([]);
    expect(await keysUnder(`${local}/`)).toEqual([]);
  });
});

// ---- Copies into R2 within the platform's time ----

/** A blob body the test controls: `at` bytes at once, the rest once `release()` is called. */
function pausedBody(bytes: Uint8Array, at: number): { body: ReadableStream<Uint8Array>; release: () => void; cancelled: Promise<unknown> } {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let onCancel: (reason: unknown) => void = () => {};
  const cancelled = new Promise<unknown>((resolve) => (onCancel = resolve));
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent >= bytes.byteLength) return controller.close();
      if (sent >= at) await released;
      const end = Math.min(bytes.byteLength, sent + 256 * 1024, sent < at ? at : Infinity);
      controller.enqueue(bytes.slice(sent, end));
      sent = end;
    },
    cancel: (reason) => onCancel(reason),
  });
  return { body, release, cancelled };
}

/** Resolves with `promise`'s value, or rejects when it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);
}

/** Reads `n` bytes of a response body (and keeps the reader). */
async function readSome(reader: ReadableStreamDefaultReader<Uint8Array>, n: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.byteLength;
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The bucket's keys a cut-off copy could leave behind: the repository's, uploads' and upload bytes'. */
async function leftoverKeys(name: string): Promise<string[]> {
  return [...(await keysUnder(`${name}/`)), ...(await keysUnder("_uploads/")), ...(await keysUnder("_data/"))];
}

/**
 * Notes those keys now; `added()` lists the ones written since.
 *
 * @example
 * const leftovers = await watchKeys(name);
 * expect(await leftovers.added()).toEqual([]);
 */
async function watchKeys(name: string): Promise<{ added(): Promise<string[]> }> {
  const before = new Set(await leftoverKeys(name));
  return { added: async () => (await leftoverKeys(name)).filter((key) => !before.has(key)) };
}

/** The test bucket, with blob writes that start only after `gate` (when given) and `delayMs` more. */
function slowBucket(delayMs: number, gate?: Promise<void>): R2Bucket {
  const bucket = env.REGISTRY;
  return new Proxy(bucket, {
    get(target, property) {
      if (property !== "put") {
        const value = Reflect.get(target, property) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      return async (key: string, value: ReadableStream | string, options?: R2PutOptions) => {
        if (key.includes("/blobs/")) {
          await gate;
          await new Promise((resolve) => setTimeout(resolve, delayMs));
        }
        return target.put(key, value, options);
      };
    },
  });
}

describe("pull-through copies within the platform's time", () => {
  const upstreams = JSON.stringify([{ registry: "https://up.example" }]);

  it("a range of a blob the upstream sends whole without its length is passed through at once, nothing copied", async () => {
    const local = uniqueName("range");
    const img = await image(81, 3 * 1024 * 1024);
    const leftovers = await watchKeys(local);
    let paused: ReturnType<typeof pausedBody> | undefined;
    routes["https://up.example"] = () => {
      paused = pausedBody(img.layer.bytes, 1024 * 1024);
      return new Response(paused.body); // ignores Range, no Content-Length
    };
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW, Range: "bytes=100-199" } });
    // Answered while the upstream still holds back most of the blob: nothing waits for a copy.
    const res = await within(worker.fetch(request, { ...env, REGISTRIES_JSON: upstreams } as Env, ctx), 2000, "the answer");
    expect(res.status).toBe(200); // a server may answer a range with the whole body
    const reader = res.body!.getReader();
    expect((await within(readSome(reader, 1024 * 1024), 2000, "the first MiB")).slice(0, 10)).toEqual(img.layer.bytes.slice(0, 10));
    paused!.release();
    while (!(await reader.read()).done);
    await waitOnExecutionContext(ctx);
    expect(await leftovers.added()).toEqual([]);
  });

  it("a blob of unknown length reaches the client as the upstream sends it, without waiting for the rest", async () => {
    const local = uniqueName("unknown");
    const img = await image(82, 3 * 1024 * 1024);
    const leftovers = await watchKeys(local);
    const paused = pausedBody(img.layer.bytes, 1024 * 1024);
    routes["https://up.example"] = () => new Response(paused.body);
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const res = await within(worker.fetch(request, { ...env, REGISTRIES_JSON: upstreams } as Env, ctx), 2000, "the answer");
    const reader = res.body!.getReader();
    expect(await sha256(await within(readSome(reader, 1024 * 1024), 2000, "the first MiB"))).toBe(await sha256(img.layer.bytes.slice(0, 1024 * 1024)));
    paused.release();
    while (!(await reader.read()).done);
    await waitOnExecutionContext(ctx);
    expect(await leftovers.added()).toEqual([]);
  });

  it("a client that goes away mid-blob leaves nothing stored, and the next whole pull caches the blob", async () => {
    const local = uniqueName("gone");
    const img = await image(83, 3 * 1024 * 1024);
    const leftovers = await watchKeys(local);
    const paused = pausedBody(img.layer.bytes, 1024 * 1024);
    routes["https://up.example"] = () => new Response(paused.body, { headers: { "Content-Length": String(img.layer.bytes.byteLength) } });
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const res = await worker.fetch(request, { ...env, REGISTRIES_JSON: upstreams } as Env, ctx);
    const reader = res.body!.getReader();
    await readSome(reader, 512 * 1024);
    await reader.cancel(new Error("client disconnected"));
    // The copy is abandoned: the upstream is let go of, the R2 write fails, nothing is published.
    await within(paused.cancelled, 2000, "letting go of the upstream");
    await waitOnExecutionContext(ctx);
    expect(await leftovers.added()).toEqual([]);
    expect((await pull(`/v2/${local}/blobs/${img.layer.digest}`, undefined)).status).toBe(404);

    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    expect(await sha256(await bodyBytes(await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams)))).toBe(img.layer.digest);
    routes = {};
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, undefined);
    expect(cached.status).toBe(200);
    expect(await sha256(await bodyBytes(cached))).toBe(img.layer.digest);
  });

  it("a blob over REGISTRIES_COPY_MAX_SIZE is served but not cached; one within it is", async () => {
    const local = uniqueName("bound");
    const [small, big] = [await image(84, 1000), await image(85, 3000)];
    routes["https://up.example"] = fakeRegistry({ repo: local, image: big, tags: { small } });
    const bound = { REGISTRIES_COPY_MAX_SIZE: "2000" };
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const res = await pull(`/v2/${local}/blobs/${big.layer.digest}`, upstreams, bound);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe("3000");
    expect(await bodyBytes(res)).toEqual(big.layer.bytes);
    expect(log.mock.calls.some(([line]) => /served but not cached: it is larger than the 2000 bytes/.test(String(line)))).toBe(true);
    expect(await bodyBytes(await pull(`/v2/${local}/blobs/${small.layer.digest}`, upstreams, bound))).toEqual(small.layer.bytes);
    expect((await pull(`/v2/${local}/blobs/${big.layer.digest}`, undefined)).status).toBe(404);
    expect((await pull(`/v2/${local}/blobs/${small.layer.digest}`, undefined)).status).toBe(200);
    expect(parseConfig({ REGISTRIES_COPY_MAX_SIZE: String(6 * 1024 ** 3) }).warnings).toEqual([expect.stringMatching(/more than one R2 write takes; using/)]);
  });

  it("a slow R2 write never holds the client back: the copy falling 16 MiB behind is abandoned", async () => {
    const local = uniqueName("slow");
    const img = await image(86, 20 * 1024 * 1024);
    const leftovers = await watchKeys(local);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    let open = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${local}/blobs/${img.layer.digest}`, { headers: { Authorization: RW } });
    const res = await worker.fetch(request, { ...env, REGISTRY: slowBucket(1, gate), REGISTRIES_JSON: upstreams } as Env, ctx);
    // The whole blob, while the R2 write has not started.
    expect(await sha256(await within(bodyBytes(res), 5000, "the whole blob"))).toBe(img.layer.digest);
    open();
    await waitOnExecutionContext(ctx);
    expect(await leftovers.added()).toEqual([]);
  });

  it("a copy not done within the time after the client's last byte is abandoned, storing nothing", async () => {
    const local = uniqueName("tail");
    const img = await image(87, 3 * 1024 * 1024);
    const leftovers = await watchKeys(local);
    routes["https://up.example"] = fakeRegistry({ repo: local, image: img });
    const background: Promise<unknown>[] = [];
    const registry = new ProxyRegistry(new R2Registry(slowBucket(200)), [new Upstream({ registry: "https://up.example", origin: "https://up.example", prefix: "", dockerHub: false })], {
      waitUntil: (promise) => background.push(promise),
      copy: { tailMs: 50 },
    });
    const blob = await registry.getBlob(local, img.layer.digest);
    expect(await sha256(await bodyBytes(new Response(blob!.body)))).toBe(img.layer.digest);
    await Promise.all(background);
    expect(await leftovers.added()).toEqual([]);
    expect(await registry.withoutUpstreams().statBlob(local, img.layer.digest)).toBeNull();
  });
});
