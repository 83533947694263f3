import { env } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import type { Env } from "../../src/env";
import { existing, indexed, inParallel, keysOf, runToEnd, storeBlob, storeImage, type Stored } from "./gc-fixtures";
import { call, clearBucket, keysUnder } from "./helpers";

/**
 * Registry-wide collections bounded per invocation (GC_MAX_OPERATIONS): they go on over as many
 * invocations as they need, each answering how far the run got, and end where one unbounded run
 * would have: everything referenced kept, every piece of garbage gone.
 */

/** `count` repositories with an image each; every 5th has a stray blob, every 7th an untagged image. */
async function fleet(count: number, prefix = "fleet"): Promise<{ kept: Stored[]; garbage: string[] }> {
  const kept: Stored[] = [];
  const garbage: string[] = [];
  const names = Array.from({ length: count }, (_, i) => `${prefix}/r${String(i).padStart(3, "0")}`);
  await inParallel(names, 25, async (name, i) => {
    kept.push(await storeImage(name, "v1", i + 1));
    if (i % 5 === 0) garbage.push(`${name}/blobs/${await storeBlob(name, `stray ${i}`)}`);
    if (i % 7 === 0) garbage.push(...keysOf(await storeImage(name, undefined, 100_000 + i)));
  });
  return { kept, garbage };
}

async function expectCollected(kept: Stored[], garbage: string[]): Promise<void> {
  const all = kept.flatMap(keysOf);
  expect((await existing(all)).size, "everything referenced is still there").toBe(all.length);
  expect([...(await existing(garbage))], "garbage left").toEqual([]);
}

/** A cron trigger's run on `bucket`. */
function cron(bucket: R2Bucket, vars: Record<string, string>): Promise<void> {
  const controller = { cron: "*/10 * * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController;
  return worker.scheduled(controller, { ...env, REGISTRY: bucket, ...vars } as Env);
}

/** The bucket of a Worker the platform stops after `calls` R2 calls: every later call throws, as when its subrequests run out. */
function dying(bucket: R2Bucket, calls: number): R2Bucket {
  let made = 0;
  return new Proxy(bucket, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (++made > calls) throw new Error("Too many subrequests (the test stopped this Worker here)");
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

describe("a registry-wide collection in bounded invocations", () => {
  beforeEach(async () => {
    await clearBucket();
    await indexed();
  });
  afterEach(() => vi.restoreAllMocks());

  it("collects 500 repositories over several invocations, each within its budget and saying how far it got", { timeout: 120_000 }, async () => {
    const { kept, garbage } = await fleet(500);
    const answers = await runToEnd("/v2/_gc?mode=untagged&grace=0&report=true", { env: { GC_MAX_OPERATIONS: "300" } });

    expect(answers.length).toBeGreaterThan(5);
    let before = 0;
    for (const answer of answers) {
      expect(answer.operations).toBeLessThanOrEqual(300);
      // How far it got: the repositories so far, the last of them, where the sweeps are.
      expect(answer.progress.repositories).toBeGreaterThanOrEqual(before);
      const done = answer.repositories.filter((r) => r.complete);
      if (done.length > 0) expect(answer.progress.last).toBe(done[done.length - 1]!.name);
      before = answer.progress.repositories;
    }
    expect(answers[answers.length - 1]!.progress).toMatchObject({ repositories: 500, failed: 0, uploads: "done", orphans: "done" });
    await expectCollected(kept, garbage);
    // Nothing half-done is left behind.
    expect(await keysUnder("_gc/_collections/")).toEqual([]);
  });

  it("works within Workers Free's 50 subrequests (GC_MAX_OPERATIONS=40)", { timeout: 60_000 }, async () => {
    const { kept, garbage } = await fleet(15, "free");
    const answers = await runToEnd("/v2/_gc?mode=untagged&grace=0&report=true", { env: { GC_MAX_OPERATIONS: "40" } });
    expect(answers.length).toBeGreaterThan(3);
    for (const answer of answers) expect(answer.operations).toBeLessThanOrEqual(40);
    await expectCollected(kept, garbage);
  });

  it("ends where an uninterrupted run would when invocations are killed midway", { timeout: 120_000 }, async () => {
    const { kept, garbage } = await fleet(40, "killed");
    // Abandoned upload bytes, for the sweeps.
    const orphan = `_data/${crypto.randomUUID()}`;
    await env.REGISTRY.put(orphan, "bytes of an upload that never finished");
    garbage.push(orphan);
    const vars = { GC_MODE: "untagged", GC_GRACE_PERIOD: "0", GC_UPLOAD_MAX_AGE: "0", GC_MAX_OPERATIONS: "150" };
    // Each kill may leave a sweep lease held; a minute later it has expired.
    let offset = 0;
    const now = Date.now.bind(Date);
    vi.spyOn(Date, "now").mockImplementation(() => now() + offset);
    let kills = 0;
    for (const calls of [30, 70, 100, 20, 85, 45, 60, 10]) {
      await cron(env.REGISTRY, vars);
      // Killed, unless what was left of the run took fewer calls (a run that ends starts anew).
      const died = await cron(dying(env.REGISTRY, calls), vars).then(
        () => false,
        (error: unknown) => {
          expect(String(error)).toMatch(/subrequests/);
          return true;
        },
      );
      if (died) kills++;
      offset += 61_000;
    }
    expect(kills).toBeGreaterThanOrEqual(6);
    for (let i = 0; i < 40; i++) {
      await cron(env.REGISTRY, vars);
      const state = JSON.parse((await (await env.REGISTRY.get("_gc/_runs/scheduled"))!.text())) as { completedAt?: number };
      if (state.completedAt) break;
    }
    await expectCollected(kept, garbage);
    // What the killed invocations left is cleared up: the sweep's tombstones, half-done collections.
    expect(await keysUnder("_gc/_tombstones/")).toEqual([]);
    expect(await keysUnder("_gc/_collections/")).toEqual([]);
  });

  it("stops when its time is up (GC_MAX_SECONDS) and goes on in the next invocation", { timeout: 120_000 }, async () => {
    const { kept, garbage } = await fleet(30, "slow");
    // An R2 answering in 40 ms: a second's budget holds about 25 calls.
    const slow = new Proxy(env.REGISTRY, {
      get(target, property) {
        const value = Reflect.get(target, property) as unknown;
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          await new Promise((resolve) => setTimeout(resolve, 40));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const started = Date.now();
    const answers = await runToEnd("/v2/_gc?mode=untagged&grace=0&report=true", { env: { REGISTRY: slow, GC_MAX_SECONDS: "1" } });
    expect(answers.length).toBeGreaterThan(5);
    // Each invocation stops soon after its second (a step under way finishes first).
    expect(Date.now() - started).toBeLessThan(answers.length * 4000);
    await expectCollected(kept, garbage);
  });

  it("starts a scheduled collection no sooner than GC_INTERVAL after the last one started", async () => {
    const { kept, garbage } = await fleet(5, "interval");
    const vars = { GC_MODE: "untagged", GC_GRACE_PERIOD: "0", GC_INTERVAL: "3600" };
    await cron(env.REGISTRY, vars);
    await expectCollected(kept, garbage);
    // Garbage made after the collection waits for the next one, an hour after the last started.
    const stray = `interval/r001/blobs/${await storeBlob("interval/r001", "made after the collection")}`;
    await cron(env.REGISTRY, vars);
    expect(await env.REGISTRY.head(stray)).not.toBeNull();
    const now = Date.now.bind(Date);
    vi.spyOn(Date, "now").mockImplementation(() => now() + 3601_000);
    await cron(env.REGISTRY, vars);
    expect(await env.REGISTRY.head(stray)).toBeNull();
  });

  it("goes on past a repository whose collection fails, and reports and logs it", async () => {
    const { kept, garbage } = await fleet(6, "mixed");
    // A manifest that is not JSON: what it references cannot be known, so that repository keeps everything.
    const broken = "mixed/r002";
    const bad = "{ this is not json";
    const strayInBroken = `${broken}/blobs/${await storeBlob(broken, "kept: its repository cannot be judged")}`;
    await env.REGISTRY.put(`${broken}/manifests/corrupt`, bad, { customMetadata: { digest: `sha256:${"0".repeat(64)}` } });
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);

    const answers = await runToEnd("/v2/_gc?mode=untagged&grace=0&report=true");
    const last = answers[answers.length - 1]!;
    expect(last.failed).toEqual([{ name: broken, error: expect.stringContaining("not a JSON object") }]);
    expect(last.progress).toMatchObject({ repositories: 6, failed: 1 });
    expect(errors).toHaveBeenCalledWith(expect.stringContaining(`gc of ${broken} failed`), expect.anything());
    const inBroken = (key: string) => key.startsWith(`${broken}/`);
    await expectCollected(kept, garbage.filter((key) => !inBroken(key)));
    expect((await existing([...garbage.filter(inBroken), strayInBroken])).size).toBe(garbage.filter(inBroken).length + 1);

    // Alone, the repository's collection answers why it stops.
    const alone = await call(`/v2/${broken}/gc?grace=0`, { method: "POST" });
    expect(alone.status).toBe(500);
    expect(JSON.stringify(await alone.json())).toContain("not a JSON object");
  });
});
