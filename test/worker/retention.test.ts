import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { parseConfig } from "../../src/config";
import type { Env } from "../../src/env";
import { withPolicies } from "../../src/policy";
import { retainAll, retainRepository } from "../../src/policy/run";
import type { Registry } from "../../src/registry/registry";
import { R2Registry } from "../../src/registry/r2";
import { call, type CallOptions, imageManifest, keysUnder, putManifest, RO, uniqueName } from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

const DAY = 86_400_000;

interface Verdict {
  tag: string;
  digest: string;
  pushed: string;
  why: string;
}
interface RepositoryReport {
  name: string;
  rules: number[];
  total: number;
  removed: Verdict[];
  kept: Verdict[];
  pending: number;
  changed: string[];
  untagged?: string[];
  collected?: { manifests: number; blobs: number; bytes: number };
}
interface Answer {
  success: boolean;
  id?: string;
  dryRun: boolean;
  complete: boolean;
  next?: string;
  startedAt: string;
  repositories: RepositoryReport[];
  progress: { repositories: number; removed: number; last?: string };
}

/** The rule of these tests: releases and main stay, and the 3 last pushed, and a week's pushes. */
function rule(prefix: string, extra: object = {}): string {
  return JSON.stringify([{ repositories: [`${prefix}/*`], keep: { tags: ["v*", "main"], most_recent: 3, pushed_within: "7d" }, ...extra }]);
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/**
 * Pushes a CI-like history, each tag its own image, pushed `days` ago (the Worker's clock is set
 * back while it pushes): v1.0 100d, v1.1 40d, main 1h, ci-1…ci-8 every 3 days from 24d to 3d ago.
 */
async function pushHistory(name: string, seed: number): Promise<Record<string, { digest: string; blobs: string[] }>> {
  const now = Date.now();
  const plan: [string, number][] = [
    ["v1.0", 100],
    ["v1.1", 40],
    ["main", 1 / 24],
    ...Array.from({ length: 8 }, (_, i) => [`ci-${i + 1}`, (8 - i) * 3] as [string, number]),
  ];
  const pushed: Record<string, { digest: string; blobs: string[] }> = {};
  vi.useFakeTimers({ toFake: ["Date"] });
  for (const [i, [tag, days]] of plan.entries()) {
    vi.setSystemTime(now - days * DAY);
    const image = await imageManifest(name, seed + i);
    expect((await putManifest(name, tag, image.text)).status).toBe(201);
    pushed[tag] = { digest: image.digest, blobs: image.blobs };
  }
  vi.useRealTimers();
  return pushed;
}

async function tagsOf(name: string): Promise<string[]> {
  const res = await call(`/v2/${name}/tags/list`);
  return ((await res.json()) as { tags: string[] }).tags;
}

async function post(path: string, options: CallOptions = {}): Promise<{ status: number; body: Answer; link: string | null }> {
  const res = await call(path, { method: "POST", ...options });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as Answer, link: res.headers.get("Link") };
}

const OLD_CI = ["ci-1", "ci-2", "ci-3", "ci-4", "ci-5", "ci-6"];
const KEPT = ["ci-7", "ci-8", "main", "v1.0", "v1.1"];

describe("retention of one repository", () => {
  it("answers a dry run with exactly the tags that would go and why, then removes them, and a collection frees them", async () => {
    const prefix = uniqueName("ret");
    const name = `${prefix}/app`;
    const pushed = await pushHistory(name, 100);
    const settings = { env: { RETENTION_JSON: rule(prefix) } };

    const dry = await post(`/v2/${name}/retention?dry_run=true`, settings);
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ success: true, dryRun: true, complete: true });
    const [report] = dry.body.repositories;
    expect(report!.name).toBe(name);
    expect(report!.rules).toEqual([0]);
    expect(report!.total).toBe(11);
    expect(report!.removed.map((v) => v.tag).sort()).toEqual(OLD_CI);
    expect(report!.kept.map((v) => v.tag).sort()).toEqual(KEPT);
    const ci6 = report!.removed.find((v) => v.tag === "ci-6")!;
    expect(ci6.digest).toBe(pushed["ci-6"]!.digest);
    expect(ci6.why).toBe(`RETENTION_JSON[0] (${prefix}/*): matches none of v*, main; 4th most recently pushed (keeps 3); pushed 9d ago (keeps 7d)`);
    expect(report!.kept.find((v) => v.tag === "v1.0")!.why).toMatch(/matches v\*$/);
    expect(report!.kept.find((v) => v.tag === "ci-8")!.why).toMatch(/2nd most recently pushed \(keeps 3\)$/);
    expect(report!.untagged!.sort()).toEqual(OLD_CI.map((t) => pushed[t]!.digest).sort());
    expect((await tagsOf(name)).length).toBe(11);

    const real = await post(`/v2/${name}/retention?report=true`, settings);
    expect(real.status).toBe(200);
    expect(real.body.dryRun).toBe(false);
    expect(real.body.repositories[0]!.removed.map((v) => v.tag).sort()).toEqual(OLD_CI);
    expect(await tagsOf(name)).toEqual(KEPT);
    // Removed like `DELETE …/manifests/<tag>`: the manifests stay until a collection.
    expect((await call(`/v2/${name}/manifests/${pushed["ci-1"]!.digest}`, { method: "HEAD" })).status).toBe(200);
    const gc = await call(`/v2/${name}/gc?mode=untagged&grace=0&report=true`, { method: "POST" });
    const freed = (await gc.json()) as { manifests: { digest: string }[]; blobs: { digest: string }[] };
    expect(freed.manifests.map((m) => m.digest).sort()).toEqual(OLD_CI.map((t) => pushed[t]!.digest).sort());
    expect(freed.blobs.map((b) => b.digest).sort()).toEqual(OLD_CI.flatMap((t) => pushed[t]!.blobs).sort());
    for (const tag of KEPT) expect((await call(`/v2/${name}/manifests/${tag}`)).status).toBe(200);

    // Nothing left to remove: a plain answer says how far it got.
    const again = await post(`/v2/${name}/retention`, settings);
    expect(again.body).toEqual({ success: true, complete: true, progress: { repositories: 1, removed: 0 } });
  });

  it("with delete_untagged, collects the repository in untagged mode after removing its tags", async () => {
    const prefix = uniqueName("untagged");
    const name = `${prefix}/app`;
    const pushed = await pushHistory(name, 200);
    const res = await post(`/v2/${name}/retention?report=true`, { env: { RETENTION_JSON: rule(prefix, { delete_untagged: true }), GC_GRACE_PERIOD: "0" } });
    const [report] = res.body.repositories;
    expect(report!.collected).toMatchObject({ manifests: 6, blobs: 12 });
    for (const tag of OLD_CI) expect((await call(`/v2/${name}/manifests/${pushed[tag]!.digest}`, { method: "HEAD" })).status).toBe(404);
    for (const tag of KEPT) expect((await call(`/v2/${name}/manifests/${tag}`)).status).toBe(200);
  });

  it("keeps immutable tags, and repositories no rule names", async () => {
    const prefix = uniqueName("keep");
    const name = `${prefix}/app`;
    await pushHistory(name, 300);
    const settings = { env: { RETENTION_JSON: rule(prefix), IMMUTABLE_TAGS: `${prefix}/*:ci-2` } };
    const dry = await post(`/v2/${name}/retention?dry_run=true`, settings);
    expect(dry.body.repositories[0]!.removed.map((v) => v.tag).sort()).toEqual(OLD_CI.filter((t) => t !== "ci-2"));
    expect(dry.body.repositories[0]!.kept.find((v) => v.tag === "ci-2")!.why).toBe(`immutable (IMMUTABLE_TAGS rule ${prefix}/*:ci-2)`);
    const other = await post(`/v2/${uniqueName("unnamed")}/retention?dry_run=true`, settings);
    expect(other.body).toMatchObject({ success: true, complete: true, repositories: [] });
  });

  it("leaves a tag pushed again after it was judged", async () => {
    const prefix = uniqueName("moved");
    const name = `${prefix}/app`;
    await pushHistory(name, 400);
    const fresh = await imageManifest(name, 499);
    const config = parseConfig({ ...env, RETENTION_JSON: rule(prefix) } as Env);
    const local = new R2Registry(env.REGISTRY);
    const registry = withPolicies(local, config);
    const stat = registry.statManifest.bind(registry);
    // CI pushes ci-1 again (another image) between the judgment and the removal.
    registry.statManifest = async (n, reference) => {
      if (reference === "ci-1") expect((await putManifest(name, "ci-1", fresh.text)).status).toBe(201);
      return stat(n, reference);
    };
    const report = (await retainRepository({ registry, bucket: env.REGISTRY, config }, name, { dryRun: false }))!;
    expect(report.changed).toEqual(["ci-1"]);
    expect(report.removed.map((v) => v.tag).sort()).toEqual(OLD_CI.filter((t) => t !== "ci-1"));
    expect((await call(`/v2/${name}/manifests/ci-1`, { method: "HEAD" })).headers.get("Docker-Content-Digest")).toBe(fresh.digest);
  });

  it("notifies each removed tag as a tag delete, by request and from the cron trigger", async () => {
    const deleted: string[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
      const body = (await new Request(input, init).json()) as { events: { action: string; target: { repository: string; tag?: string } }[] };
      for (const e of body.events) if (e.action === "delete" && e.target.tag) deleted.push(`${e.target.repository}:${e.target.tag}`);
      return new Response(null, { status: 202 });
    });
    const prefix = uniqueName("notify");
    const name = `${prefix}/app`;
    await pushHistory(name, 450);
    const hooks = { RETENTION_JSON: rule(prefix, { keep: { tags: ["v*", "main"], most_recent: 4 } }), NOTIFICATIONS_JSON: JSON.stringify([{ url: "https://hooks.test/registry" }]) };
    expect((await post(`/v2/${name}/retention`, { env: { ...hooks, RETENTION_MAX_TAGS: "2" } })).body.complete).toBe(false);
    expect(deleted.sort()).toEqual([`${name}:ci-1`, `${name}:ci-2`]);
    const cronEnv = { ...env, ...hooks } as Env;
    await worker.scheduled({ cron: "0 4 * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController, cronEnv);
    expect(deleted.sort()).toEqual(["ci-1", "ci-2", "ci-3", "ci-4", "ci-5"].map((t) => `${name}:${t}`));
  });

  it("stops at RETENTION_MAX_TAGS and goes on when asked again", async () => {
    const prefix = uniqueName("budget");
    const name = `${prefix}/app`;
    await pushHistory(name, 500);
    const settings = { env: { RETENTION_JSON: rule(prefix), RETENTION_MAX_TAGS: "4" } };
    const first = await post(`/v2/${name}/retention`, settings);
    expect(first.body).toMatchObject({ complete: false, progress: { removed: 4 } });
    expect(first.link).toBe(`</v2/${name}/retention>; rel="next"`);
    expect((await tagsOf(name)).length).toBe(7);
    const second = await post(`/v2/${name}/retention?report=true`, settings);
    expect(second.body.complete).toBe(true);
    expect(second.body.repositories[0]!.removed).toHaveLength(2);
    expect(await tagsOf(name)).toEqual(KEPT);
  });

  it("needs push to run, and pull too for dry_run and report", async () => {
    const prefix = uniqueName("access");
    const name = `${prefix}/app`;
    const key = await makeKey("ES256");
    const pushOnly = `Bearer ${await sign(key, claims(["push"]))}`;
    const settings = { RETENTION_JSON: rule(prefix), JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    expect((await call(`/v2/${name}/retention`, { method: "POST", auth: RO, env: settings })).status).toBe(403);
    expect((await call(`/v2/${name}/retention?dry_run=true`, { method: "POST", auth: pushOnly, env: settings })).status).toBe(403);
    expect((await call(`/v2/${name}/retention?report=1`, { method: "POST", auth: pushOnly, env: settings })).status).toBe(403);
    expect((await call(`/v2/${name}/retention`, { method: "POST", auth: pushOnly, env: settings })).status).toBe(200);
    expect((await call(`/v2/${name}/retention?dry_run=maybe`, { method: "POST", env: settings })).status).toBe(400);
    const scoped = `Bearer ${await sign(key, claims(["pull", "push"], { repositories: [`${prefix}/*`] }))}`;
    expect((await call(`/v2/_retention`, { method: "POST", auth: scoped, env: settings })).status).toBe(403);
  });
});

describe("registry-wide retention", () => {
  // Each invocation writes the run's record again: R2 takes one write of a key per second, so an
  // invocation following the last at once waits that second out (R2_LIMITS=enforce).
  it("goes through every repository a rule names in bounded invocations, resuming from its cursor", { timeout: 30_000 }, async () => {
    const prefix = uniqueName("wide");
    const names = [`${prefix}/a`, `${prefix}/b`, `${prefix}/c`];
    for (const [i, name] of names.entries()) await pushHistory(name, 600 + i * 20);
    const settings = { env: { RETENTION_JSON: rule(prefix), RETENTION_MAX_REPOSITORIES: "1", RETENTION_MAX_TAGS: "4" } };

    const dry = await post(`/v2/_retention?dry_run=true`, settings);
    expect(dry.body).toMatchObject({ dryRun: true, complete: false });
    expect(dry.body.repositories.map((r) => r.name)).toEqual([names[0]]);

    const seen: RepositoryReport[] = [];
    let answer = await post(`/v2/_retention?report=true`, settings);
    let invocations = 1;
    seen.push(...answer.body.repositories);
    while (!answer.body.complete) {
      expect(answer.body.next).toMatch(/^[0-9a-f-]{36}$/);
      expect(answer.link).toBe(`</v2/_retention?cursor=${answer.body.next}&report=true>; rel="next"`);
      expect(await keysUnder(`_retention/runs/${answer.body.next}`)).toHaveLength(1);
      const id = answer.body.next!;
      answer = await post(`/v2/_retention?cursor=${id}&report=true`, settings);
      expect(answer.body.id).toBe(id);
      seen.push(...answer.body.repositories);
      if (++invocations > 20) throw new Error("the run does not end");
    }
    // 3 repositories of 6 tags each, 4 tags per invocation: a repository is judged again where the budget ran out.
    expect(invocations).toBeGreaterThanOrEqual(5);
    expect(answer.body.progress).toMatchObject({ repositories: 3, removed: 18, last: names[2] });
    expect(await keysUnder(`_retention/runs/${answer.body.id}`)).toEqual([]);
    for (const name of names) {
      expect(await tagsOf(name)).toEqual(KEPT);
      expect(seen.filter((r) => r.name === name).flatMap((r) => r.removed.map((v) => v.tag)).sort()).toEqual(OLD_CI);
    }
    // A cursor that is not (or no longer) a run.
    expect((await call(`/v2/_retention?cursor=${answer.body.id}`, { method: "POST", ...settings })).status).toBe(400);
  });

  it("stops when the catalog of an older bucket is still being indexed, and goes on next time", async () => {
    const config = parseConfig({ ...env, RETENTION_JSON: rule("any") } as Env);
    let calls = 0;
    // A catalog that has settled no name yet (what the backfill of a serverless-registry bucket answers meanwhile).
    const registry = { listRepositories: async () => (calls++, { items: [], more: true }) } as unknown as Registry;
    const run = await retainAll({ registry, bucket: env.REGISTRY, config }, { dryRun: true });
    expect(calls).toBe(1);
    expect(run).toMatchObject({ complete: false, next: run.id, repositories: [] });
    await env.REGISTRY.delete(`_retention/runs/${run.id}`);
  });

  it("starts one delete_untagged collection per invocation, and goes on after it", async () => {
    const prefix = uniqueName("collect");
    const names = [`${prefix}/a`, `${prefix}/b`];
    const pushed = [await pushHistory(names[0]!, 800), await pushHistory(names[1]!, 820)];
    const settings = { env: { RETENTION_JSON: rule(prefix, { delete_untagged: true }), GC_GRACE_PERIOD: "0" } };
    const first = await post(`/v2/_retention?report=true`, settings);
    expect(first.body.complete).toBe(false);
    expect(first.body.repositories.map((r) => [r.name, r.collected?.manifests])).toEqual([[names[0], 6]]);
    const second = await post(`/v2/_retention?cursor=${first.body.next}&report=true`, settings);
    expect(second.body.repositories.map((r) => [r.name, r.collected?.manifests])).toEqual([[names[1], 6]]);
    for (const [i, name] of names.entries()) {
      expect(await tagsOf(name)).toEqual(KEPT);
      for (const tag of OLD_CI) expect((await call(`/v2/${name}/manifests/${pushed[i]![tag]!.digest}`, { method: "HEAD" })).status).toBe(404);
    }
  });

  it("runs from the cron trigger before garbage collection, continuing across triggers", async () => {
    const prefix = uniqueName("cron");
    const names = [`${prefix}/a`, `${prefix}/b`];
    const pushed = [await pushHistory(names[0]!, 700), await pushHistory(names[1]!, 720)];
    const cronEnv = { ...env, RETENTION_JSON: rule(prefix), RETENTION_MAX_REPOSITORIES: "1", GC_MODE: "untagged", GC_GRACE_PERIOD: "0" } as Env;
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const trigger = () => worker.scheduled({ cron: "0 4 * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController, cronEnv);
    await trigger();
    expect(await tagsOf(names[0]!)).toEqual(KEPT);
    expect((await tagsOf(names[1]!)).length).toBe(11);
    expect(await keysUnder("_retention/runs/scheduled")).toHaveLength(1);
    // The collection after it freed what the removed tags held.
    for (const tag of OLD_CI) expect((await call(`/v2/${names[0]}/manifests/${pushed[0]![tag]!.digest}`, { method: "HEAD" })).status).toBe(404);
    await trigger();
    expect(await tagsOf(names[1]!)).toEqual(KEPT);
    for (const tag of OLD_CI) expect((await call(`/v2/${names[1]}/blobs/${pushed[1]![tag]!.blobs[1]}`, { method: "HEAD" })).status).toBe(404);
    expect(await keysUnder("_retention/runs/scheduled")).toEqual([]);
    const lines = log.mock.calls.map((c) => String(c[0])).filter((l) => l.startsWith("r2-registry: scheduled retention"));
    expect(lines[0]).toMatch(/removed 6 tags; 1 repositories so far .* goes on with cursor scheduled/);
    expect(lines[1]).toMatch(/removed 6 tags; complete \(2 repositories, 12 tags since/);
    // Only the cron trigger starts its run; a request may go on with one under way, not start one.
    const res = await call("/v2/_retention?cursor=scheduled&dry_run=true", { method: "POST", env: { RETENTION_JSON: rule(prefix) } });
    expect(res.status).toBe(400);
    expect(await keysUnder("_retention/runs/scheduled")).toEqual([]);
  });
});
