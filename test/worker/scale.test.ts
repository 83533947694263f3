import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, imageManifest, putManifest } from "./helpers";

/** The test bucket, wrapped to record every R2 call the Worker makes (method and key/prefix). */
function countingBucket() {
  const calls: { method: string; key: string }[] = [];
  const bucket = new Proxy(env.REGISTRY, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: any[]) => {
        const first = args[0];
        const key = typeof first === "string" ? first : Array.isArray(first) ? first.join(",") : String(first?.prefix ?? "");
        calls.push({ method: String(prop), key });
        return value.apply(target, args);
      };
    },
  });
  return { bucket, calls };
}

/** Removes every key (storage is shared by the tests of a file). */
async function emptyBucket() {
  for (;;) {
    const page = await env.REGISTRY.list({ limit: 1000 });
    if (page.objects.length === 0) return;
    await env.REGISTRY.delete(page.objects.map((o) => o.key));
  }
}

async function seedTags(name: string, tags: string[], digest: string) {
  const body = "{}";
  for (let i = 0; i < tags.length; i += 1000) {
    await Promise.all(
      tags.slice(i, i + 1000).map((tag) =>
        env.REGISTRY.put(`${name}/manifests/${tag}`, body, {
          httpMetadata: { contentType: "application/vnd.oci.image.manifest.v1+json" },
          customMetadata: { digest },
        }),
      ),
    );
  }
}

describe("repositories with thousands of tags", () => {
  it("pages through 10,000 tags in lexical order, 1,000 at a time, with digests interleaved", async () => {
    const name = "scale/tags";
    const tags = Array.from({ length: 10_000 }, (_, i) => `v${String(i).padStart(5, "0")}-${(i * 7919) % 10_000}`);
    const digest = `sha256:${"aa".repeat(32)}`;
    await seedTags(name, tags, digest);
    // Digest keys sort in the middle of the tags ("sha256:…" between "r…" and "t…").
    await seedTags(name, ["alpha", "rc1", "stable", "zeta"], digest);
    for (let i = 0; i < 500; i += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, j) => env.REGISTRY.put(`${name}/manifests/sha256:${(i + j).toString(16).padStart(64, "0")}`, "{}")),
      );
    }
    const expected = [...tags, "alpha", "rc1", "stable", "zeta"].sort();

    const seen: string[] = [];
    let path: string | undefined = `/v2/${name}/tags/list`;
    let pages = 0;
    while (path) {
      const res = await call(path);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { tags: string[] };
      seen.push(...body.tags);
      pages++;
      const link = res.headers.get("Link");
      if (link) {
        expect(body.tags).toHaveLength(1000);
        expect(link).toMatch(/^<\/v2\/scale\/tags\/tags\/list\?n=1000&last=[^>]+>; rel="next"$/);
      }
      path = link ? link.slice(1, link.indexOf(">")) : undefined;
    }
    expect(pages).toBe(11);
    expect(seen).toEqual(expected);
  }, 180_000);

  it("reads a bounded number of R2 listings per page, however many digest keys sit among the tags", async () => {
    const name = "scale/digests";
    await seedTags(name, ["a", "b", "z"], `sha256:${"bb".repeat(32)}`);
    for (let i = 0; i < 2000; i += 1000) {
      await Promise.all(
        Array.from({ length: 1000 }, (_, j) => env.REGISTRY.put(`${name}/manifests/sha256:${(i + j).toString(16).padStart(64, "0")}`, "{}")),
      );
    }
    const { bucket, calls } = countingBucket();
    const res = await call(`/v2/${name}/tags/list`, { env: { REGISTRY: bucket } });
    expect(((await res.json()) as { tags: string[] }).tags).toEqual(["a", "b", "z"]);
    expect(calls.filter((c) => c.method === "list").length).toBeLessThanOrEqual(3);
  }, 60_000);

  it("deletes a digest with 300 tags in one call and leaves other tags alone", async () => {
    const name = "scale/delete";
    const image = await imageManifest(name);
    const other = await imageManifest(name, 2);
    expect((await putManifest(name, "keep", other.text)).status).toBe(201);
    expect((await putManifest(name, "first", image.text)).status).toBe(201);
    const aliases = Array.from({ length: 300 }, (_, i) => `alias-${i}`);
    for (let i = 0; i < aliases.length; i += 50) {
      const tags = aliases.slice(i, i + 50).map((t) => `tag=${t}`).join("&");
      expect((await call(`/v2/${name}/manifests/${image.digest}?${tags}`, {
        method: "PUT", body: image.text, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      })).status).toBe(201);
    }
    const before = (await (await call(`/v2/${name}/tags/list`)).json()) as { tags: string[] };
    expect(before.tags).toHaveLength(302);

    const res = await call(`/v2/${name}/manifests/${image.digest}`, { method: "DELETE" });
    expect(res.status).toBe(202);
    const after = (await (await call(`/v2/${name}/tags/list`)).json()) as { tags: string[] };
    expect(after.tags).toEqual(["keep"]);
    expect((await call(`/v2/${name}/manifests/${image.digest}`)).status).toBe(404);
    expect((await call(`/v2/${name}/manifests/keep`)).status).toBe(200);
  }, 60_000);

  it("re-tags a stored manifest without touching any blob", async () => {
    const name = "scale/retag";
    const image = await imageManifest(name);
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    const { bucket, calls } = countingBucket();
    const res = await call(`/v2/${name}/manifests/v2`, {
      method: "PUT",
      body: image.text,
      headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
      env: { REGISTRY: bucket },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(calls.filter((c) => c.key.includes("/blobs/"))).toEqual([]);
    expect((await call(`/v2/${name}/manifests/v2`)).headers.get("Docker-Content-Digest")).toBe(image.digest);
  });
});

describe("catalog at scale", () => {
  it("lists 1,000 repositories with a cost that does not grow with their tags and blobs", async () => {
    await emptyBucket();
    const names = Array.from({ length: 1000 }, (_, i) => `team-${i % 10}/app-${String(i).padStart(4, "0")}`);
    for (let i = 0; i < names.length; i += 250) {
      await Promise.all(names.slice(i, i + 250).map((n) => env.REGISTRY.put(`_repositories/${n}`, "")));
    }
    // Plenty of tags, blobs and uploads in a few of them.
    await seedTags(names[0]!, Array.from({ length: 500 }, (_, i) => `t${i}`), `sha256:${"cc".repeat(32)}`);
    await Promise.all(Array.from({ length: 300 }, (_, i) => env.REGISTRY.put(`${names[1]}/blobs/sha256:${i.toString(16).padStart(64, "0")}`, "x")));
    await env.REGISTRY.put("_meta/catalog-backfilled", "test");

    const { bucket, calls } = countingBucket();
    const res = await call("/v2/_catalog?n=400", { env: { REGISTRY: bucket } });
    const body = (await res.json()) as { repositories: string[] };
    expect(body.repositories).toEqual([...names].sort().slice(0, 400));
    expect(res.headers.get("Link")).toBe(`</v2/_catalog?n=400&last=${encodeURIComponent(body.repositories[399]!)}>; rel="next"`);
    expect(calls.filter((c) => c.method === "list").length).toBe(1);
    expect(calls.length).toBeLessThanOrEqual(2);
  }, 60_000);
});
