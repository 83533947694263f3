import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import type { Env } from "../../src/env";
import { clearUpstreamTokens } from "../../src/registry/proxy";
import { parseChallenges } from "../../src/registry/proxy/challenge";
import { boundedTee } from "../../src/registry/proxy/tee";
import { basic, bodyBytes, bytesOf, call, keysUnder, OCI_MANIFEST, ORIGIN, RW, sha256, uniqueName } from "./helpers";

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

  it("serves a range of an uncached blob without waiting for a copy: cut from the whole answer, which is cached meanwhile", async () => {
    const name = officialName();
    const img = await image(12);
    // This upstream ignores Range and answers the whole blob.
    routes["https://registry-1.docker.io"] = fakeRegistry({ repo: `library/${name}`, image: img });
    const res = await pull(`/v2/${name}/blobs/${img.layer.digest}`, HUB_JSON, {}, { headers: { Range: "bytes=10-19" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 10-19/${img.layer.bytes.byteLength}`);
    expect(await bodyBytes(res)).toEqual(img.layer.bytes.slice(10, 20));
    // The copy finished in the background: the blob is served without REGISTRIES_JSON.
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
    // Wrong password: 401 upstream, so 404 here (not 500).
    const other = uniqueName("basic");
    const denied = await pull(`/v2/${other}/manifests/latest`, upstreams, { MIRROR_PASSWORD: "wrong" });
    expect(denied.status).toBe(404);
  });
});

describe("upstream failures never cache bad content and never fail the request", () => {
  it("a manifest whose bytes do not match Docker-Content-Digest is neither served nor cached", async () => {
    const local = uniqueName("bad");
    const img = await image(31);
    const upstreams = JSON.stringify([{ registry: "https://bad.example" }]);
    routes["https://bad.example"] = fakeRegistry({ repo: local, image: img, manifestBody: img.manifest.replace("tar+gzip", "tar+zstd") });
    expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).status).toBe(404);
    expect((await pull(`/v2/${local}/manifests/${img.digest}`, upstreams)).status).toBe(404);
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
    routes = {};
    expect((await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams)).status).toBe(404);
    expect((await pull(`/v2/${local}/blobs/${img.config.digest}`, upstreams)).status).toBe(404);
    expect((await keysUnder(`${local}/`)).filter((k) => k.includes("/blobs/"))).toEqual([]);
  });

  it("an upstream that is down, answers 500 or garbage is skipped: 404, not 500", async () => {
    const local = uniqueName("down");
    const img = await image(33);
    const digest = img.layer.digest;
    // Down (connection error).
    const down = JSON.stringify([{ registry: "https://down.example" }]);
    for (const path of [`manifests/latest`, `manifests/${img.digest}`, `blobs/${digest}`]) {
      expect((await pull(`/v2/${local}/${path}`, down)).status).toBe(404);
      expect((await pull(`/v2/${local}/${path}`, down, {}, { method: "HEAD" })).status).toBe(404);
    }
    expect((await pull(`/v2/${local}/tags/list`, down)).status).toBe(404);
    // 500s and garbage.
    routes["https://err.example"] = () => new Response("oops", { status: 500 });
    routes["https://junk.example"] = (request) =>
      new URL(request.url).pathname.endsWith("/tags/list")
        ? new Response("<html>", { headers: { "Content-Type": "application/json" } })
        : new Response("<html>not a manifest</html>", { headers: { "Content-Type": "text/html", "Content-Length": "x" } });
    for (const registry of ["https://err.example", "https://junk.example"]) {
      const upstreams = JSON.stringify([{ registry }]);
      expect((await pull(`/v2/${local}/manifests/latest`, upstreams)).status).toBe(404);
      expect((await pull(`/v2/${local}/blobs/${digest}`, upstreams, {}, { method: "HEAD" })).status).toBe(404);
      expect((await pull(`/v2/${local}/tags/list`, upstreams)).status).toBe(404);
    }
    // A token server that fails.
    routes["https://tok.example"] = (request) =>
      new URL(request.url).pathname === "/token"
        ? new Response("nope", { status: 503 })
        : new Response(null, { status: 401, headers: { "WWW-Authenticate": 'Bearer realm="https://tok.example/token"' } });
    expect((await pull(`/v2/${local}/manifests/latest`, JSON.stringify([{ registry: "https://tok.example" }]))).status).toBe(404);
  });

  it("a slow upstream times out: 404 within the bound", async () => {
    const local = uniqueName("slow");
    routes["https://slow.example"] = (request) =>
      new Promise<Response>((_, reject) => request.signal.addEventListener("abort", () => reject(new Error("aborted"))));
    const upstreams = JSON.stringify([{ registry: "https://slow.example" }]);
    const started = Date.now();
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams, { REGISTRIES_TIMEOUT: "0.2" });
    expect(res.status).toBe(404);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it("a failing first upstream falls through to the second", async () => {
    const local = uniqueName("second");
    const img = await image(34);
    routes["https://two.example"] = fakeRegistry({ repo: local, image: img });
    const upstreams = JSON.stringify([{ registry: "https://one.example" }, { registry: "https://two.example" }]);
    const res = await pull(`/v2/${local}/manifests/latest`, upstreams);
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(img.digest);
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

describe("bounded tee", () => {
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

  it("holds the fast branch back while the slow one has more than the limit queued", async () => {
    const [fast, slow] = boundedTee(chunks(20, 1000), 3000);
    let fastRead = 0;
    const fastDone = drain(fast, () => (fastRead += 1000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fastRead).toBeLessThanOrEqual(5000);
    expect(await drain(slow)).toBe(20_000);
    expect(await fastDone).toBe(20_000);
  });

  it("a cancelled branch does not hold the other back", async () => {
    const [a, b] = boundedTee(chunks(20, 1000), 1000);
    await b.cancel();
    expect(await drain(a)).toBe(20_000);
  });

  it("passes a source error to both branches", async () => {
    let n = 0;
    const source = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (++n > 3) controller.error(new Error("connection reset"));
        else controller.enqueue(new Uint8Array(10));
      },
    });
    const [a, b] = boundedTee(source, 1000);
    await expect(drain(a)).rejects.toThrow("connection reset");
    await expect(drain(b)).rejects.toThrow("connection reset");
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
  it("streams a blob an upstream sends without its length at once, and caches it (verified) meanwhile", async () => {
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
    routes = {};
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    expect(cached.status).toBe(200);
    expect(cached.headers.get("Content-Length")).toBe(String(img.layer.bytes.byteLength));
    expect(await sha256(await bodyBytes(cached))).toBe(img.layer.digest);
  });

  it("does not cache a blob an upstream sends without its length when its bytes do not match the digest", async () => {
    const local = uniqueName("big");
    const img = await image(53, 2 * 1024 * 1024);
    const wrong = bytesOf(2 * 1024 * 1024, 999);
    routes["https://up.example"] = () => new Response(new Response(wrong).body!.pipeThrough(new TransformStream()));
    const upstreams = JSON.stringify([{ registry: "https://up.example" }]);
    const res = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
    await bodyBytes(res);
    routes = {};
    const cached = await pull(`/v2/${local}/blobs/${img.layer.digest}`, upstreams);
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
