import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { existing, indexed, inParallel, keysOf, storeBlob, storeImage, type Stored } from "./gc-fixtures";
import { call, keysUnder, OCI_MANIFEST, putManifest, uniqueName } from "./helpers";

/**
 * Collections of one repository too big for one request: they go on over several requests
 * (`next`, `Link`), each within GC_MAX_OPERATIONS, and what clients push in between is kept.
 */

interface Answer {
  success: boolean;
  complete: boolean;
  next?: string;
  manifests: { digest: string }[];
  blobs: { digest: string }[];
}

/** R2 calls each request made, from LOG_R2_OPERATIONS's log lines. */
function callsLogged(log: { mock: { calls: unknown[][] } }, path: string): number[] {
  return log.mock.calls
    .map(([line]) => /R2 operations for POST (\S+): class A (\d+), class B (\d+), free (\d+)/.exec(String(line)))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === path)
    .map((m) => Number(m[2]) + Number(m[3]) + Number(m[4]));
}

/** The phase a half-done collection is in (what it saved). */
async function phaseOf(cursor: string): Promise<{ phase: string; next: number }> {
  return JSON.parse(await (await env.REGISTRY.get(`_gc/_collections/${cursor}`))!.text()) as { phase: string; next: number };
}

describe("a collection of one repository too big for one request", () => {
  afterEach(() => vi.restoreAllMocks());

  it("goes on over several requests, each within its budget, and keeps what is pushed meanwhile", { timeout: 180_000 }, async () => {
    await indexed();
    const name = uniqueName("big");
    const configText = JSON.stringify({ architecture: "amd64", os: "linux" });
    const config = await storeBlob(name, configText);
    const image = async (tag: string | undefined, seed: number) => storeImage(name, tag, seed, { blobs: [config, await storeBlob(name, `layer ${seed}`)] });
    const tagged: Stored[] = [];
    const untagged: Stored[] = [];
    const strays: string[] = [];
    await inParallel(
      Array.from({ length: 1500 }, (_, i) => i),
      50,
      async (i) => {
        if (i < 400) tagged.push(await image(`t${i}`, i));
        else if (i < 1000) untagged.push(await image(undefined, i));
        else strays.push(await storeBlob(name, `stray ${i}`));
      },
    );
    strays.sort();

    const path = `/v2/${name}/gc`;
    const vars = { GC_MAX_OPERATIONS: "200", LOG_R2_OPERATIONS: "true" };
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    let res = await call(`${path}?mode=untagged&grace=0&report=true`, { method: "POST", env: vars });
    const answers: Answer[] = [];
    let revived: string | undefined;
    let late: string | undefined;
    for (;;) {
      expect(res.status).toBe(200);
      const answer = (await res.json()) as Answer;
      answers.push(answer);
      const link = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "")?.[1];
      if (answer.complete) {
        expect(link).toBeUndefined();
        break;
      }
      expect(link).toBe(`${path}?cursor=${answer.next}&report=true`);
      const { phase, next } = await phaseOf(answer.next!);
      // While it marks: an untagged manifest it has already read (digest keys are listed in
      // order, the smallest first) is tagged again.
      if (!revived) {
        expect(phase).toBe("manifests");
        revived = untagged.map((u) => u.digest).sort()[0]!;
        const text = await (await env.REGISTRY.get(`${name}/manifests/${revived}`))!.text();
        expect((await putManifest(name, "revived", text)).status).toBe(201);
      }
      // While it sweeps: a new image uses the stray blob swept last.
      if (!late && phase === "sweep" && next > 0) {
        const text = JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config, size: configText.length },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: strays[strays.length - 1], size: 10 }],
        });
        expect((await putManifest(name, "late", text)).status).toBe(201);
        late = strays[strays.length - 1];
      }
      res = await call(link!, { method: "POST", env: vars });
    }
    expect(revived && late, "both pushes happened while the collection was half done").toBeTruthy();
    expect(answers.length).toBeGreaterThan(5);
    const calls = callsLogged(log, path);
    expect(calls.length).toBe(answers.length);
    for (const n of calls) expect(n).toBeLessThanOrEqual(200);

    // Everything tagged is kept, the revived manifest and the late image with their blobs too.
    const keep = [...tagged.flatMap(keysOf), `${name}/manifests/revived`, `${name}/manifests/late`, `${name}/blobs/${late}`];
    const revivedImage = untagged.find((u) => u.digest === revived)!;
    keep.push(...keysOf(revivedImage));
    expect((await existing(keep)).size).toBe(new Set(keep).size);
    // The rest is gone: 599 untagged manifests and their layers, 499 strays.
    const gone = [...untagged.filter((u) => u !== revivedImage).flatMap((u) => [`${name}/manifests/${u.digest}`, `${name}/blobs/${u.blobs[1]}`]), ...strays.slice(0, -1).map((d) => `${name}/blobs/${d}`)];
    expect([...(await existing(gone))]).toEqual([]);
    expect(answers.flatMap((a) => a.manifests).length).toBe(599);
    expect(answers.flatMap((a) => a.blobs).length).toBe(599 + 499);
    expect(await keysUnder("_gc/_collections/")).toEqual([]);
  });

  it("answers a cursor that is unknown, or of another repository, with 400", async () => {
    const name = uniqueName("cursor");
    const other = await call(`/v2/${name}/gc?cursor=${crypto.randomUUID()}`, { method: "POST" });
    expect(other.status).toBe(400);
    expect((await call(`/v2/${name}/gc?cursor=..%2Fx`, { method: "POST" })).status).toBe(400);
    expect((await call(`/v2/_gc?cursor=${crypto.randomUUID()}`, { method: "POST" })).status).toBe(400);
  });
});

describe("stale intents", () => {
  /** The test bucket refusing deletes of more than 1,000 keys, as R2 does. */
  function r2Deletes(bucket: R2Bucket, sizes: number[]): R2Bucket {
    return new Proxy(bucket, {
      get(target, property) {
        const value = Reflect.get(target, property) as unknown;
        if (typeof value !== "function") return value;
        if (property !== "delete") return (value as (...a: unknown[]) => unknown).bind(target);
        return (keys: string | string[]) => {
          const count = Array.isArray(keys) ? keys.length : 1;
          sizes.push(count);
          if (count > 1000) return Promise.reject(new Error(`delete of ${count} keys: at most 1000 per call`));
          return target.delete(keys);
        };
      },
    });
  }

  it("removes 2,000 intents of pushes that died, in batches of 1,000, and collects", { timeout: 60_000 }, async () => {
    const name = uniqueName("intents");
    const image = await storeImage(name, "v1", 1);
    const stray = await storeBlob(name, "protected by nothing but dead pushes");
    const old = Date.now() - 3600_000;
    await inParallel(
      Array.from({ length: 2000 }, () => crypto.randomUUID()),
      100,
      async (id) => {
        await env.REGISTRY.put(`_gc/${name}/_intents/${id}`, JSON.stringify({ at: old, digests: [stray] }));
      },
    );
    const sizes: number[] = [];
    const res = await call(`/v2/${name}/gc?grace=0&report=true`, { method: "POST", env: { REGISTRY: r2Deletes(env.REGISTRY, sizes) } });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as Answer).blobs.map((b) => b.digest)).toEqual([stray]);
    expect(await keysUnder(`_gc/${name}/_intents/`)).toEqual([]);
    expect(sizes.filter((n) => n === 1000).length).toBeGreaterThanOrEqual(2);
    expect((await existing(keysOf(image))).size).toBe(keysOf(image).length);
  });
});
