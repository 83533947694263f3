import { env } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { bytesOf, call, clearBucket, hexOf, imageManifest, OCI_MANIFEST, putManifest, sha256 } from "./helpers";

interface Catalog {
  repositories: string[];
}

async function pushImage(name: string, tag = "latest"): Promise<void> {
  const m = await imageManifest(name);
  const res = await putManifest(name, tag, m.text);
  expect(res.status, name).toBe(201);
}

async function catalog(query = ""): Promise<{ res: Response; repositories: string[] }> {
  const res = await call(`/v2/_catalog${query}`);
  expect(res.status).toBe(200);
  const body = (await res.clone().json()) as Catalog;
  return { res, repositories: body.repositories };
}

/** The target of a `Link: <…>; rel="next"` header, with its query decoded. */
function nextPage(res: Response): { path: string; n: string | null; last: string | null } | undefined {
  const m = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "");
  if (!m) return undefined;
  const url = new URL(m[1]!, "https://registry.test");
  return { path: url.pathname, n: url.searchParams.get("n"), last: url.searchParams.get("last") };
}

/** Seeds a repository the way serverless-registry wrote it: manifest and blob keys only. */
async function seedOriginal(name: string): Promise<void> {
  const config = new TextEncoder().encode(JSON.stringify({ os: "linux", name }));
  const layer = bytesOf(300, name.length);
  const configDigest = await sha256(config);
  const layerDigest = await sha256(layer);
  await env.REGISTRY.put(`${name}/blobs/${configDigest}`, config, { sha256: hexOf(configDigest) });
  await env.REGISTRY.put(`${name}/blobs/${layerDigest}`, layer, { sha256: hexOf(layerDigest) });
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.byteLength },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layerDigest, size: layer.byteLength }],
  });
  const digest = await sha256(text);
  const options = { httpMetadata: { contentType: OCI_MANIFEST }, customMetadata: { hasSubject: "false" }, sha256: hexOf(digest) };
  await env.REGISTRY.put(`${name}/manifests/${digest}`, text, options);
  await env.REGISTRY.put(`${name}/manifests/latest`, text, options);
  await env.REGISTRY.put(`${name}/insertion/last_update`, "", { customMetadata: { timestamp: `${Date.now()}-x` } });
}

describe("GET /v2/_catalog", () => {
  beforeEach(clearBucket);

  it("an empty registry lists no repositories", async () => {
    const { res, repositories } = await catalog();
    expect(repositories).toEqual([]);
    expect(res.headers.get("Link")).toBeNull();
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
  });

  it("lists repository names, nested ones included, in lexical order", async () => {
    const names = ["zeta", "alpha/nested/deep", "alpha", "beta/x", "alpha-two", "alpha.b", "a0"];
    for (const name of names) await pushImage(name);
    const { res, repositories } = await catalog();
    expect(repositories).toEqual([...names].sort());
    expect(res.headers.get("Link")).toBeNull();
  });

  it("does not list a repository that only has blobs", async () => {
    await pushImage("with-manifest");
    await imageManifest("blobs-only");
    expect((await catalog()).repositories).toEqual(["with-manifest"]);
  });

  it("paginates with n and last and a Link header while more remain", async () => {
    const names = ["e/1", "a", "d", "b/x", "c"];
    for (const name of names) await pushImage(name);

    const first = await catalog("?n=2");
    expect(first.repositories).toEqual(["a", "b/x"]);
    expect(nextPage(first.res)).toEqual({ path: "/v2/_catalog", n: "2", last: "b/x" });

    const second = await catalog("?n=2&last=b/x");
    expect(second.repositories).toEqual(["c", "d"]);
    expect(second.res.headers.get("Link")).toBe(`</v2/_catalog?n=2&last=d>; rel="next"`);

    const third = await catalog("?n=2&last=d");
    expect(third.repositories).toEqual(["e/1"]);
    expect(third.res.headers.get("Link")).toBeNull();

    const exact = await catalog("?n=5");
    expect(exact.repositories).toEqual(["a", "b/x", "c", "d", "e/1"]);
    expect(exact.res.headers.get("Link")).toBeNull();
  });

  it("following the Link header walks every repository exactly once", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `repo${String(i).padStart(2, "0")}/app`);
    for (const name of [...names].reverse()) await pushImage(name);
    const seen: string[] = [];
    let path: string | undefined = "/v2/_catalog?n=5";
    let pages = 0;
    while (path) {
      const res = await call(path);
      expect(res.status).toBe(200);
      seen.push(...((await res.json()) as Catalog).repositories);
      path = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "")?.[1];
      pages += 1;
      expect(pages).toBeLessThan(10);
    }
    expect(seen).toEqual(names);
    expect(pages).toBe(3);
  });

  it("n=0 gives an empty list and no Link", async () => {
    await pushImage("one");
    const { res, repositories } = await catalog("?n=0");
    expect(repositories).toEqual([]);
    expect(res.headers.get("Link")).toBeNull();
  });

  it("an invalid n is 400", async () => {
    for (const n of ["x", "-2"]) {
      const res = await call(`/v2/_catalog?n=${n}`);
      expect(res.status, n).toBe(400);
    }
  });

  it("lists the repositories of a bucket written by the original serverless-registry", async () => {
    await seedOriginal("legacy/app");
    await seedOriginal("legacy");
    await seedOriginal("other");
    // Keys the original kept that are not repositories.
    await env.REGISTRY.put("ghost/uploads/1f0e2b8c-0000-4000-8000-000000000000", '{"jwt":"x"}');
    await env.REGISTRY.put("1f0e2b8c-0000-4000-8000-000000000000", "multipart target");
    await env.REGISTRY.put("blobsonly/blobs/sha256:" + "b".repeat(64), "x");

    expect((await catalog()).repositories).toEqual(["legacy", "legacy/app", "other"]);
    // The seeded repositories are usable too.
    const tags = await call("/v2/legacy/app/tags/list");
    expect(await tags.json()).toEqual({ name: "legacy/app", tags: ["latest"] });
  });

  it("lists both old-layout repositories and ones pushed afterwards", async () => {
    await seedOriginal("old");
    await pushImage("new");
    expect((await catalog()).repositories).toEqual(["new", "old"]);
    await pushImage("newer");
    expect((await catalog()).repositories).toEqual(["new", "newer", "old"]);
    const page = await catalog("?n=1&last=new");
    expect(page.repositories).toEqual(["newer"]);
    expect(page.res.headers.get("Link")).toBe(`</v2/_catalog?n=1&last=newer>; rel="next"`);
  });
});
