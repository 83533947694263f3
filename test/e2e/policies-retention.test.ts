/**
 * Retention over days of pushes, with the real parts: skopeo pushes 30 tags to the dev server
 * (releases, an active repository's daily CI tags, a dormant one's weekly nightlies, and a
 * repository no rule names); the server is stopped, the push time each push recorded on its tag
 * (`r2-registry-pushed`) is set days back in the bucket it persisted (lib/local-bucket.ts), and a
 * server started again on that bucket runs `POST /v2/_retention`. The dry run lists exactly the tags
 * that go and why (`v*` keeps every release, `most_recent` the dormant repository's last three,
 * `pushed_within` the active one's last week), the real run removes those, and skopeo pulls every
 * tag kept back with its digest unchanged.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { skopeoPush } from "./lib/fixtures.ts";
import { describeResponse, RegistryClient } from "./lib/http.ts";
import { setPushed, withLocalBucket } from "./lib/local-bucket.ts";
import { readOciLayout, seededImage, writeOciLayout, type BuiltImage } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { targetKind } from "./lib/target.ts";

const APP = "e2e/retention/app";
const LEGACY = "e2e/retention/legacy";
const SANDBOX = "e2e/sandbox/app";
const RETENTION_JSON = JSON.stringify([{ repositories: ["e2e/retention/*"], keep: { tags: ["v*"], most_recent: 3, pushed_within: "7d" } }]);
const RULE = "RETENTION_JSON[0] (e2e/retention/*)";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Every tag pushed, and how long before the retention run it looks pushed. */
const PUSHES = [
  // Active: a release now and then, a CI tag a day.
  { repo: APP, tag: "v1.0.0", ago: 60 * DAY },
  { repo: APP, tag: "v1.1.0", ago: 33 * DAY },
  { repo: APP, tag: "v2.0.0", ago: 8 * DAY + 12 * HOUR },
  ...Array.from({ length: 16 }, (_, i) => ({ repo: APP, tag: `ci-${i + 1}`, ago: (15 - i) * DAY + 3 * HOUR })),
  // Dormant: one release long ago, a nightly a week, the last 10 days ago.
  { repo: LEGACY, tag: "v0.9.0", ago: 120 * DAY },
  ...Array.from({ length: 8 }, (_, i) => ({ repo: LEGACY, tag: `nightly-${i + 1}`, ago: (10 + 7 * (7 - i)) * DAY + 5 * HOUR })),
  // No rule names it: nothing goes, however old.
  { repo: SANDBOX, tag: "scratch-1", ago: 90 * DAY },
  { repo: SANDBOX, tag: "scratch-2", ago: 45 * DAY },
];

interface Verdict {
  tag: string;
  digest: string;
  pushed: string;
  why: string;
}
interface Run {
  success: boolean;
  dryRun: boolean;
  complete: boolean;
  repositories: { name: string; total: number; removed: Verdict[]; kept: Verdict[]; untagged?: string[] }[];
  progress: { repositories: number; removed: number };
}

describe.skipIf(targetKind() !== "dev")("retention of tags pushed over days", () => {
  let server: RunningDevServer | undefined;
  let client: RegistryClient;
  let work: string | undefined;
  let skopeo: Skopeo;
  let layout: string;
  const images = new Map<string, BuiltImage>();
  const pushedAt = new Map<string, string>();
  const srv = () => server!;
  const digest = (tag: string) => images.get(tag)!.manifest.digest;

  async function start(): Promise<void> {
    server = await startDevServer({ stateDir: join(work!, "state"), env: { RETENTION_JSON } });
    client = new RegistryClient(srv().url, { username: srv().username, password: srv().password });
  }

  async function retention(query: string): Promise<Run> {
    const path = `/v2/_retention?${query}`;
    const res = await client.request("POST", path);
    expect(res.status, describeResponse("POST", path, res)).toBe(200);
    return JSON.parse(res.body.toString("utf8")) as Run;
  }

  async function tagsOf(repo: string): Promise<string[]> {
    const res = await client.request("GET", `/v2/${repo}/tags/list`);
    return (JSON.parse(res.body.toString("utf8")) as { tags: string[] }).tags;
  }

  const pull = (repo: string, tag: string, dir: string) =>
    skopeo.run(
      ["copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${srv().username}:${srv().password}`, `docker://${srv().host}/${repo}:${tag}`, `oci:${dir}:${tag}`],
      { redact: [srv().password] },
    );

  beforeAll(async () => {
    work = makeTempDir("e2e-retention");
    for (const { tag } of PUSHES) images.set(tag, seededImage(`e2e-retention-${tag}`, { architecture: "amd64", layerCount: 1 }));
    layout = join(work, "layout");
    writeOciLayout(layout, [...images].map(([tag, artifact]) => ({ tag, artifact })));
    skopeo = new Skopeo(join(work, "skopeo"));
    await start();
  });
  afterAll(() => cleanupAll([() => server?.stop(), () => removeTempDir(work)]));

  it("skopeo pushes 30 tags; just pushed, every one of them stays", async () => {
    expect(PUSHES).toHaveLength(30);
    for (const { repo, tag } of PUSHES) await skopeoPush(skopeo, srv(), layout, tag, repo);
    const dry = await retention("dry_run=true");
    expect(dry.repositories.map((r) => [r.name, r.total, r.removed.length])).toEqual([
      [APP, 19, 0],
      [LEGACY, 9, 0],
    ]);
  });

  it("pushed over days: the dry run lists exactly the tags that go, and why", async () => {
    // What a push recorded, set back in the bucket while no server runs.
    await server!.stop();
    server = undefined;
    const now = Date.now();
    await withLocalBucket(join(work!, "state"), async (bucket) => {
      for (const { repo, tag, ago } of PUSHES) {
        const pushed = new Date(now - ago);
        await setPushed(bucket, repo, tag, pushed);
        pushedAt.set(tag, pushed.toISOString());
      }
    });
    await start();

    const dry = await retention("dry_run=true");
    expect(dry).toMatchObject({ success: true, dryRun: true, complete: true, progress: { repositories: 2, removed: 14 } });
    // The repository no rule names is not judged.
    expect(dry.repositories.map((r) => r.name)).toEqual([APP, LEGACY]);
    const [app, legacy] = dry.repositories;
    const gone = (reasons: string) => `${RULE}: matches none of v*; ${reasons} (keeps 7d)`;
    // Oldest first: the order a run whose budget runs out removes them in.
    expect(app!.removed.map((v) => [v.tag, v.why])).toEqual([
      ["ci-1", gone("17th most recently pushed (keeps 3); pushed 15d 3h ago")],
      ["ci-2", gone("16th most recently pushed (keeps 3); pushed 14d 3h ago")],
      ["ci-3", gone("15th most recently pushed (keeps 3); pushed 13d 3h ago")],
      ["ci-4", gone("14th most recently pushed (keeps 3); pushed 12d 3h ago")],
      ["ci-5", gone("13th most recently pushed (keeps 3); pushed 11d 3h ago")],
      ["ci-6", gone("12th most recently pushed (keeps 3); pushed 10d 3h ago")],
      ["ci-7", gone("11th most recently pushed (keeps 3); pushed 9d 3h ago")],
      ["ci-8", gone("9th most recently pushed (keeps 3); pushed 8d 3h ago")],
      ["ci-9", gone("8th most recently pushed (keeps 3); pushed 7d 3h ago")],
    ]);
    // Most recent first.
    expect(app!.kept.map((v) => [v.tag, v.why])).toEqual([
      ["ci-16", `${RULE}: 1st most recently pushed (keeps 3)`],
      ["ci-15", `${RULE}: 2nd most recently pushed (keeps 3)`],
      ["ci-14", `${RULE}: 3rd most recently pushed (keeps 3)`],
      ["ci-13", `${RULE}: pushed 3d 3h ago (keeps 7d)`],
      ["ci-12", `${RULE}: pushed 4d 3h ago (keeps 7d)`],
      ["ci-11", `${RULE}: pushed 5d 3h ago (keeps 7d)`],
      ["ci-10", `${RULE}: pushed 6d 3h ago (keeps 7d)`],
      ["v2.0.0", `${RULE}: matches v*`],
      ["v1.1.0", `${RULE}: matches v*`],
      ["v1.0.0", `${RULE}: matches v*`],
    ]);
    expect(legacy!.removed.map((v) => [v.tag, v.why])).toEqual([
      ["nightly-1", gone("8th most recently pushed (keeps 3); pushed 59d 5h ago")],
      ["nightly-2", gone("7th most recently pushed (keeps 3); pushed 52d 5h ago")],
      ["nightly-3", gone("6th most recently pushed (keeps 3); pushed 45d 5h ago")],
      ["nightly-4", gone("5th most recently pushed (keeps 3); pushed 38d 5h ago")],
      ["nightly-5", gone("4th most recently pushed (keeps 3); pushed 31d 5h ago")],
    ]);
    expect(legacy!.kept.map((v) => [v.tag, v.why])).toEqual([
      ["nightly-8", `${RULE}: 1st most recently pushed (keeps 3)`],
      ["nightly-7", `${RULE}: 2nd most recently pushed (keeps 3)`],
      ["nightly-6", `${RULE}: 3rd most recently pushed (keeps 3)`],
      ["v0.9.0", `${RULE}: matches v*`],
    ]);
    // Each verdict names the tag's digest and the push time set in the bucket; the manifests of the
    // tags that go would be left untagged (each tag here holds its own image).
    for (const r of dry.repositories) {
      for (const v of [...r.removed, ...r.kept]) expect([v.tag, v.digest, v.pushed]).toEqual([v.tag, digest(v.tag), pushedAt.get(v.tag)]);
      expect(r.untagged).toEqual(r.removed.map((v) => digest(v.tag)));
    }
    // Nothing went.
    expect(await tagsOf(APP)).toHaveLength(19);
    expect(await tagsOf(LEGACY)).toHaveLength(9);
  });

  it("the real run removes exactly those tags", async () => {
    const run = await retention("report=true");
    expect(run).toMatchObject({ success: true, dryRun: false, complete: true, progress: { repositories: 2, removed: 14 } });
    expect(run.repositories.map((r) => [r.name, r.removed.map((v) => v.tag)])).toEqual([
      [APP, ["ci-1", "ci-2", "ci-3", "ci-4", "ci-5", "ci-6", "ci-7", "ci-8", "ci-9"]],
      [LEGACY, ["nightly-1", "nightly-2", "nightly-3", "nightly-4", "nightly-5"]],
    ]);
    expect(await tagsOf(APP)).toEqual(["ci-10", "ci-11", "ci-12", "ci-13", "ci-14", "ci-15", "ci-16", "v1.0.0", "v1.1.0", "v2.0.0"]);
    expect(await tagsOf(LEGACY)).toEqual(["nightly-6", "nightly-7", "nightly-8", "v0.9.0"]);
    expect(await tagsOf(SANDBOX)).toEqual(["scratch-1", "scratch-2"]);
    // A second run finds nothing more to remove.
    expect((await retention("dry_run=true")).progress.removed).toBe(0);
  });

  it("skopeo pulls every tag kept back with its digest unchanged", async () => {
    const back = join(work!, "pulled");
    const kept = PUSHES.filter(({ tag }) => !/^(ci-[1-9]|nightly-[1-5])$/.test(tag));
    expect(kept).toHaveLength(16);
    for (const { repo, tag } of kept) {
      await pull(repo, tag, back);
      expect(readOciLayout(back, tag).root, `${repo}:${tag}`).toBe(digest(tag));
    }
  });
});
