/**
 * Benchmark: `tags/list` page latency at 100, 1,000 and 10,000 tags, and `_catalog` latency at 10,
 * 100 and 1,000 repositories, for r2-registry (`pnpm dev`: workerd + local R2) and Debian's
 * distribution 2.8 (filesystem storage) on the same machine, in the same run.
 *
 * Run: pnpm bench (or node bench/listing.ts)
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { expectStatus, medianMs, ms, ratio, send, sha256, table, type Target } from "./lib.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const CONFIG = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}';
const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(CONFIG), size: CONFIG.length },
  layers: [],
});
const MANIFEST_DIGEST = sha256(MANIFEST);
const OCI = { "content-type": "application/vnd.oci.image.manifest.v1+json" };

/** Pushes the tiny image to a repository (config blob + manifest by digest). */
async function pushImage(target: Target, repo: string): Promise<void> {
  const session = expectStatus(await send(target, "POST", `/v2/${repo}/blobs/uploads/`), 202, "upload");
  const location = new URL(String(session.headers.location), target.url);
  location.searchParams.set("digest", sha256(CONFIG));
  expectStatus(await send(target, "PUT", location.pathname + location.search, { "content-type": "application/octet-stream" }, CONFIG), 201, "blob");
  expectStatus(await send(target, "PUT", `/v2/${repo}/manifests/${MANIFEST_DIGEST}`, OCI, MANIFEST), 201, "manifest");
}

function tagName(i: number): string {
  return `build-${String(i).padStart(6, "0")}`;
}

/** r2-registry: tags through its `?tag=` multi-tag PUT, 500 per request. */
async function seedTagsOurs(target: Target, repo: string, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 500) {
    const tags = Array.from({ length: Math.min(500, to - i) }, (_, j) => `tag=${tagName(i + j)}`).join("&");
    expectStatus(await send(target, "PUT", `/v2/${repo}/manifests/${MANIFEST_DIGEST}?${tags}`, OCI, MANIFEST), 201, "tags");
  }
}

/** distribution: tag links written straight into its filesystem layout (its API tags one at a time). */
function seedTagsDistribution(storage: string, repo: string, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const dir = join(storage, "docker/registry/v2/repositories", repo, "_manifests/tags", tagName(i));
    mkdirSync(join(dir, "current"), { recursive: true });
    writeFileSync(join(dir, "current/link"), MANIFEST_DIGEST);
    const index = join(dir, "index/sha256", MANIFEST_DIGEST.slice(7));
    mkdirSync(index, { recursive: true });
    writeFileSync(join(index, "link"), MANIFEST_DIGEST);
  }
}

/** Latency of the first and of the last page of a listing (following Link headers). */
async function pageLatency(target: Target, firstPath: string): Promise<{ first: number; last: number; pages: number; items: number }> {
  const paths = [firstPath];
  let items = 0;
  for (;;) {
    const reply = expectStatus(await send(target, "GET", paths.at(-1)!), 200, "list");
    const body = JSON.parse(reply.body.toString("utf8")) as { tags?: string[]; repositories?: string[] };
    items += (body.tags ?? body.repositories ?? []).length;
    const link = reply.headers.link;
    const next = typeof link === "string" ? /<([^>]+)>/.exec(link)?.[1] : undefined;
    if (!next) break;
    paths.push(next);
  }
  const first = await medianMs(RUNS, async () => (await send(target, "GET", paths[0]!)).ms);
  const last = await medianMs(RUNS, async () => (await send(target, "GET", paths.at(-1)!)).ms);
  return { first, last, pages: paths.length, items };
}

const ours = await startDevServer({ env: { WRANGLER_LOG: "warn" } }); // as the minimal Workers: no per-request log line
const dist = await startDistribution({ auth: false, tls: true });
try {
  const r2: Target = { label: "r2-registry", url: ours.url, username: ours.username, password: ours.password };
  const d28: Target = { label: "distribution 2.8", url: dist.url };
  console.log(`r2-registry ${r2.url} (wrangler dev, local R2)  vs  distribution 2.8 ${d28.url} (filesystem, no auth)`);
  console.log(`median of ${RUNS} runs after a warm-up; each request on a kept-alive TLS connection`);

  const tagRows: (string | number)[][] = [];
  const repo = "bench/tags";
  await pushImage(r2, repo);
  await pushImage(d28, repo);
  let have = 0;
  for (const count of [100, 1000, 10_000]) {
    await seedTagsOurs(r2, repo, have, count);
    seedTagsDistribution(dist.storageDir, repo, have, count);
    have = count;
    const a = await pageLatency(r2, `/v2/${repo}/tags/list?n=1000`);
    const b = await pageLatency(d28, `/v2/${repo}/tags/list?n=1000`);
    if (a.items !== count) throw new Error(`r2-registry listed ${a.items} tags, expected ${count}`);
    tagRows.push([count, `${ms(a.first)} / ${ms(a.last)} (${a.pages} pages)`, `${ms(b.first)} / ${ms(b.last)} (${b.pages} pages, ${b.items} tags)`, ratio(a.first, b.first)]);
  }
  table("tags/list?n=1000: first page / last page", ["tags", "r2-registry", "distribution 2.8", "first-page ratio"], tagRows);

  const catalogRows: (string | number)[][] = [];
  let repos = 0;
  for (const count of [10, 100, 1000]) {
    for (; repos < count; repos += 10) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, j) => {
          const name = `bench/repo-${String(repos + j).padStart(5, "0")}`;
          await pushImage(r2, name);
          await pushImage(d28, name);
        }),
      );
    }
    const a = await pageLatency(r2, "/v2/_catalog?n=1000");
    const b = await pageLatency(d28, "/v2/_catalog?n=1000");
    catalogRows.push([count, `${ms(a.first)} (${a.items} repos)`, `${ms(b.first)} (${b.items} repos)`, ratio(a.first, b.first)]);
  }
  table("_catalog?n=1000 (first page; the bucket also holds the 10,000-tag repository)", ["repositories", "r2-registry", "distribution 2.8", "ratio"], catalogRows);
} finally {
  await ours.stop();
  await dist.stop();
}
