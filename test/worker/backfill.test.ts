import { env } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { existing, inParallel, keysOf, runToEnd, storeBlob, storeImage, type Stored } from "./gc-fixtures";
import { bodyBytes, call, clearBucket, errorCode, sha256 } from "./helpers";

/**
 * A big bucket written by serverless-registry (manifests and blobs, no catalog markers, no links
 * index) is indexed a bounded slice per request: each request still answers correctly, and the
 * index is complete after enough of them (or of the cron's runs).
 */

/** Repository names that sort in tricky ways: nested, sharing prefixes, with `-` and `.` before `/`. */
function names(count: number): string[] {
  const tricky = ["a", "a-b", "a.b", "a/b", "a/b/c", "a0", "org0", "org0-x/app"];
  const many = Array.from({ length: count }, (_, i) => `org${i % 7}/team${i % 3}/app${i}`);
  return [...tricky, ...many];
}

async function original(all: string[]): Promise<Stored[]> {
  const images: Stored[] = [];
  await inParallel(all, 25, async (name, i) => {
    images.push(await storeImage(name, "latest", i + 1, { original: true }));
  });
  // What the original leaves besides repositories.
  await env.REGISTRY.put("ghost/uploads/1f0e2b8c-0000-4000-8000-000000000000", '{"jwt":"x"}');
  await env.REGISTRY.put("org0/team0/app0/insertion/last_update", "");
  return images;
}

/** A symlink in serverless-registry's mount format: `name` holds `digest` through `holder`'s bytes. */
async function symlink(name: string, digest: string, holder: string): Promise<void> {
  await env.REGISTRY.put(`${name}/blobs/${digest}`, `${holder}/blobs/${digest}`, { customMetadata: { "X-Serverless-Registry-Symlink": holder } });
}

describe("backfills of a bucket written by serverless-registry", () => {
  beforeEach(clearBucket);

  it("lists the catalog correctly while it is being indexed, over several requests", { timeout: 120_000 }, async () => {
    const all = names(150);
    await original(all);
    const sorted = [...all].sort();
    // 40 calls for a collection: a request may spend 20 on the backfill.
    const vars = { GC_MAX_OPERATIONS: "40" };
    const seen: string[] = [];
    let path: string | undefined = "/v2/_catalog?n=25";
    let requests = 0;
    let short = 0;
    while (path) {
      const res = await call(path, { env: vars });
      expect(res.status).toBe(200);
      const page = ((await res.json()) as { repositories: string[] }).repositories;
      // Each page is the next slice of the full, sorted list: nothing skipped, nothing twice.
      expect(page).toEqual(sorted.slice(seen.length, seen.length + page.length));
      if (page.length < 25) short++;
      seen.push(...page);
      path = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "")?.[1];
      expect(++requests).toBeLessThan(100);
    }
    expect(seen).toEqual(sorted);
    expect(short, "pages answered while the index was incomplete").toBeGreaterThan(1);
    expect(await env.REGISTRY.head("_meta/catalog-backfilled")).not.toBeNull();
    expect(await env.REGISTRY.head("_meta/catalog-backfill")).toBeNull();
    // Now the catalog comes from the index alone.
    const full = await call("/v2/_catalog?n=1000", { env: vars });
    expect(((await full.json()) as { repositories: string[] }).repositories).toEqual(sorted);
  });

  it("deleting bytes others symlink to waits for the links index (a retryable 503), then hands them over", { timeout: 120_000 }, async () => {
    await original(names(120));
    const holder = "a";
    const bytes = "shared layer";
    const digest = await storeBlob(holder, bytes);
    const linked = "org6/team1/app118";
    await symlink(linked, digest, holder);
    const vars = { GC_MAX_OPERATIONS: "40" };
    let attempts = 0;
    for (;;) {
      const res = await call(`/v2/${holder}/blobs/${digest}`, { method: "DELETE", env: vars });
      attempts++;
      if (res.status === 202) break;
      expect(res.status).toBe(503);
      expect(res.headers.get("Retry-After")).toBe("5");
      expect(await errorCode(res)).toBe("UNAVAILABLE");
      // Nothing was deleted meanwhile.
      expect((await call(`/v2/${holder}/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
      expect(attempts).toBeLessThan(60);
    }
    expect(attempts).toBeGreaterThan(2);
    expect(await env.REGISTRY.head("_meta/links-v2-backfilled")).not.toBeNull();
    expect((await call(`/v2/${holder}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    const res = await call(`/v2/${linked}/blobs/${digest}`);
    expect(res.status).toBe(200);
    expect(await sha256(await bodyBytes(res))).toBe(digest);
  });

  it("a registry-wide collection builds both indexes first, then collects, over several invocations", { timeout: 120_000 }, async () => {
    const images = await original(names(40));
    const garbage: string[] = [];
    for (const [i, image] of images.entries()) {
      if (i % 4 === 0) garbage.push(`${image.name}/blobs/${await storeBlob(image.name, `stray ${i}`)}`);
    }
    // A blob nothing references in its holder ("a", collected first), kept while a symlink in a
    // repository collected later uses its bytes (the symlink, referenced by nothing, goes then).
    const shared = await storeBlob("a", "used through a symlink");
    await symlink("org0/team0/app0", shared, "a");
    const answers = await runToEnd("/v2/_gc?grace=0&report=true", { env: { GC_MAX_OPERATIONS: "60" } });
    expect(answers[0]!.progress.repositories).toBe(0);
    expect(answers.length).toBeGreaterThan(3);
    for (const answer of answers) expect(answer.operations).toBeLessThanOrEqual(60);
    const kept = images.flatMap(keysOf);
    expect((await existing(kept)).size).toBe(kept.length);
    expect([...(await existing(garbage))]).toEqual([]);
    expect(await env.REGISTRY.head("_meta/links-v2-backfilled")).not.toBeNull();
    const reports = answers.flatMap((a) => a.repositories) as unknown as { name: string; shared: { digest: string }[]; blobs: { digest: string }[] }[];
    const of = (name: string) => reports.filter((r) => r.name === name);
    expect(of("a").flatMap((r) => r.shared.map((b) => b.digest))).toEqual([shared]);
    expect(await env.REGISTRY.head(`a/blobs/${shared}`)).not.toBeNull();
    expect(of("org0/team0/app0").flatMap((r) => r.blobs.map((b) => b.digest))).toContain(shared);
    expect(await env.REGISTRY.head(`org0/team0/app0/blobs/${shared}`)).toBeNull();
  });
});
