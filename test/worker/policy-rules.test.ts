import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import { parseImmutableTags } from "../../src/policy/immutable";
import { age, decide, parseDuration, parseRetention } from "../../src/policy/retention";
import type { TagRecord } from "../../src/registry/registry";
import { call } from "./helpers";

const DAY = 86_400_000;
const NOW = Date.parse("2026-06-01T12:00:00Z");

/** Tag records pushed `daysAgo` days before NOW. */
function tags(spec: Record<string, number>): TagRecord[] {
  return Object.entries(spec).map(([tag, daysAgo], i) => ({
    tag,
    digest: `sha256:${String(i).padStart(64, "0")}`,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    pushed: new Date(NOW - daysAgo * DAY),
  }));
}

function rules(json: unknown) {
  const warnings: string[] = [];
  const parsed = parseRetention(JSON.stringify(json), warnings);
  expect(warnings).toEqual([]);
  return parsed;
}

const none = parseImmutableTags("", []);

describe("IMMUTABLE_TAGS", () => {
  it("matches repository and tag patterns, * matching / in repository patterns", () => {
    const warnings: string[] = [];
    const immutable = parseImmutableTags(" *:v* , prod/*:*,*:latest-stable,team/app:release-*", warnings);
    expect(warnings).toEqual([]);
    expect(immutable.rules.map((r) => r.text)).toEqual(["*:v*", "prod/*:*", "*:latest-stable", "team/app:release-*"]);
    expect(immutable.ruleFor("team/app", "v1.2.3")?.text).toBe("*:v*");
    expect(immutable.ruleFor("a/b/c/d", "v1")?.text).toBe("*:v*");
    expect(immutable.ruleFor("team/app", "main")).toBeUndefined();
    expect(immutable.ruleFor("team/app", "V1")).toBeUndefined(); // tags are case-sensitive
    expect(immutable.ruleFor("prod/api", "main")?.text).toBe("prod/*:*");
    expect(immutable.ruleFor("prod/team/api", "anything")?.text).toBe("prod/*:*");
    expect(immutable.ruleFor("production/api", "main")).toBeUndefined();
    expect(immutable.ruleFor("prod", "main")).toBeUndefined();
    expect(immutable.ruleFor("x", "latest-stable")?.text).toBe("*:latest-stable");
    expect(immutable.ruleFor("x", "latest-stable2")).toBeUndefined();
    expect(immutable.ruleFor("team/app", "release-7")?.text).toBe("team/app:release-*");
    expect(immutable.ruleFor("team/app2", "release-7")).toBeUndefined();
    // A dot in a pattern is a dot, not "any character".
    expect(parseImmutableTags("*:v1.0", []).ruleFor("x", "v1x0")).toBeUndefined();
    expect(immutable.covers("prod/x")).toBe(true);
    expect(parseImmutableTags("prod/*:*", []).covers("dev/x")).toBe(false);
  });

  it("leaves bad rules out with a warning and keeps the others; empty means none", () => {
    const warnings: string[] = [];
    const immutable = parseImmutableTags("*:v*,novalue,Team/*:*,*:bad/tag,a:b:c,,*:ok", warnings);
    expect(immutable.rules.map((r) => r.text)).toEqual(["*:v*", "*:ok"]);
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatch(/IMMUTABLE_TAGS: ignoring "novalue": a rule is <repository pattern>:<tag pattern>/);
    expect(warnings[1]).toMatch(/"Team\/\*" is not a repository pattern/);
    expect(warnings[2]).toMatch(/"bad\/tag" is not a tag pattern/);
    expect(warnings[3]).toMatch(/"a:b:c"/);
    expect(parseImmutableTags(undefined, []).empty).toBe(true);
    expect(parseImmutableTags("  ", []).empty).toBe(true);
  });
});

describe("RETENTION_JSON", () => {
  it("parses the issue's example", () => {
    const [rule] = rules([{ repositories: ["team/*"], keep: { tags: ["v*", "main"], most_recent: 10, pushed_within: "30d" }, delete_untagged: true }]);
    expect(rule!.index).toBe(0);
    expect(rule!.repositories.map((p) => p.text)).toEqual(["team/*"]);
    expect(rule!.keep.tags!.map((p) => p.text)).toEqual(["v*", "main"]);
    expect(rule!.keep.mostRecent).toBe(10);
    expect(rule!.keep.pushedWithin).toEqual({ text: "30d", ms: 30 * DAY });
    expect(rule!.deleteUntagged).toBe(true);
  });

  it("reads durations in seconds, minutes, hours, days and weeks", () => {
    expect(parseDuration("45s")).toBe(45_000);
    expect(parseDuration("90m")).toBe(5_400_000);
    expect(parseDuration("12h")).toBe(12 * 3_600_000);
    expect(parseDuration("2w")).toBe(14 * DAY);
    expect(parseDuration("30 d")).toBeUndefined();
    expect(parseDuration("1.5d")).toBeUndefined();
    expect(parseDuration("d")).toBeUndefined();
    expect(age(12 * DAY + 4 * 3_600_000 + 5000)).toBe("12d 4h");
    expect(age(3_600_000 * 3 + 60_000 * 5)).toBe("3h 5m");
    expect(age(40_000)).toBe("40s");
  });

  it("leaves out each bad rule with a reason, never half of one", () => {
    const warnings: string[] = [];
    const parsed = parseRetention(
      JSON.stringify([
        { repositories: ["ci/*"], keep: { most_recent: 3 } },
        { repositories: ["a/*"], keep: { most_recnt: 3 } }, // misspelt: would keep nothing
        { repositories: ["b/*"], keep: {} },
        { repositories: [], keep: { most_recent: 1 } },
        { repositories: ["c/*"], keep: { pushed_within: "30 days" } },
        { repositories: ["d/*"], keep: { most_recent: -1 } },
        { repositories: ["e/*"], keep: { tags: ["v/1"] } },
        { repositories: ["f/*"], keep: { most_recent: 1 }, delete_untaged: true },
        { repositories: ["g/*"], keep: { most_recent: 1 }, delete_untagged: "yes" },
        "not an object",
        { repositories: ["ok/*"], keep: { tags: ["v*"] } },
      ]),
      warnings,
    );
    expect(parsed.map((r) => r.index)).toEqual([0, 10]);
    expect(warnings).toHaveLength(9);
    expect(warnings[0]).toMatch(/^RETENTION_JSON\[1\] is left out: .*most_recnt/);
    expect(warnings[1]).toMatch(/^RETENTION_JSON\[2\] is left out: keep: needs at least one of tags, most_recent, pushed_within/);
    expect(warnings[2]).toMatch(/^RETENTION_JSON\[3\] is left out: repositories: needs at least one repository pattern/);
    expect(warnings[3]).toMatch(/^RETENTION_JSON\[4\] is left out: keep.pushed_within: "30 days" is not a duration/);
    expect(warnings[4]).toMatch(/^RETENTION_JSON\[5\] is left out: keep.most_recent/);
    expect(warnings[5]).toMatch(/^RETENTION_JSON\[6\] is left out: keep.tags.0: "v\/1" is not a tag pattern/);
    expect(warnings[6]).toMatch(/^RETENTION_JSON\[7\] is left out: .*delete_untaged/);
    expect(warnings[7]).toMatch(/^RETENTION_JSON\[8\] is left out: delete_untagged/);
    expect(warnings[8]).toMatch(/^RETENTION_JSON\[9\] is left out/);
  });

  it("rejects JSON that is not an array of rules as a whole", () => {
    const warnings: string[] = [];
    expect(parseRetention("{not json", warnings)).toEqual([]);
    expect(parseRetention('{"repositories":["a"]}', warnings)).toEqual([]);
    expect(warnings[0]).toMatch(/^RETENTION_JSON is not valid JSON .*; no retention rule applies/);
    expect(warnings[1]).toMatch(/^RETENTION_JSON must be a JSON array/);
    expect(parseRetention("", warnings)).toEqual([]);
    expect(warnings).toHaveLength(2);
  });

  it("reports the budget variables' mistakes and falls back to the defaults", () => {
    const config = parseConfig({ RETENTION_MAX_REPOSITORIES: "0", RETENTION_MAX_TAGS: "lots" });
    expect(config.policy.limits).toEqual({ repositories: 50, tags: 500 });
    expect(config.warnings.filter((w) => w.startsWith("RETENTION_MAX_"))).toHaveLength(2);
    expect(parseConfig({ RETENTION_MAX_REPOSITORIES: "3", RETENTION_MAX_TAGS: "7" }).policy.limits).toEqual({ repositories: 3, tags: 7 });
  });
});

describe("which tags retention removes", () => {
  const history = tags({ "v1.0": 100, "v1.1": 40, main: 0.5, "ci-1": 20, "ci-2": 12, "ci-3": 6, "ci-4": 2, "ci-5": 1 });

  it("keeps every tag of a repository no rule names", () => {
    expect(decide("other/app", history, rules([{ repositories: ["team/*"], keep: { most_recent: 1 } }]), none, NOW)).toBeUndefined();
  });

  it("keeps tags whose name matches a pattern", () => {
    const d = decide("team/app", history, rules([{ repositories: ["team/*"], keep: { tags: ["v*", "main"] } }]), none, NOW)!;
    expect(d.kept.map((v) => v.tag).sort()).toEqual(["main", "v1.0", "v1.1"]);
    expect(d.removed.map((v) => v.tag).sort()).toEqual(["ci-1", "ci-2", "ci-3", "ci-4", "ci-5"]);
    expect(d.kept.find((v) => v.tag === "main")!.why).toBe("RETENTION_JSON[0] (team/*): matches main");
    expect(d.removed.find((v) => v.tag === "ci-1")!.why).toBe("RETENTION_JSON[0] (team/*): matches none of v*, main");
  });

  it("keeps the most recently pushed, counting every tag of the repository", () => {
    const d = decide("team/app", history, rules([{ repositories: ["team/*"], keep: { most_recent: 3 } }]), none, NOW)!;
    // Most recent first: main (0.5d), ci-5 (1d), ci-4 (2d) | ci-3, ci-2, ci-1, v1.1, v1.0
    expect(d.kept.map((v) => v.tag)).toEqual(["main", "ci-5", "ci-4"]);
    // Removed oldest first (a run whose budget runs out removes the oldest).
    expect(d.removed.map((v) => v.tag)).toEqual(["v1.0", "v1.1", "ci-1", "ci-2", "ci-3"]);
    expect(d.kept[1]!.why).toBe("RETENTION_JSON[0] (team/*): 2nd most recently pushed (keeps 3)");
    expect(d.removed[4]!.why).toBe("RETENTION_JSON[0] (team/*): 4th most recently pushed (keeps 3)");
  });

  it("keeps what was pushed within a duration", () => {
    const d = decide("team/app", history, rules([{ repositories: ["team/*"], keep: { pushed_within: "7d" } }]), none, NOW)!;
    expect(d.kept.map((v) => v.tag)).toEqual(["main", "ci-5", "ci-4", "ci-3"]);
    expect(d.removed.find((v) => v.tag === "ci-2")!.why).toBe("RETENTION_JSON[0] (team/*): pushed 12d ago (keeps 7d)");
    expect(d.kept.find((v) => v.tag === "ci-3")!.why).toBe("RETENTION_JSON[0] (team/*): pushed 6d ago (keeps 7d)");
  });

  it("keeps a tag when any clause of any rule naming the repository keeps it, and says why each did not", () => {
    const d = decide(
      "team/app",
      history,
      rules([
        { repositories: ["team/*"], keep: { tags: ["v*"], most_recent: 2 } },
        { repositories: ["nothing/*", "team/app"], keep: { pushed_within: "5d" } },
      ]),
      none,
      NOW,
    )!;
    expect(d.rules).toEqual([0, 1]);
    expect(d.kept.map((v) => v.tag).sort()).toEqual(["ci-4", "ci-5", "main", "v1.0", "v1.1"]);
    expect(d.removed.map((v) => v.tag)).toEqual(["ci-1", "ci-2", "ci-3"]);
    expect(d.removed[2]!.why).toBe(
      "RETENTION_JSON[0] (team/*): matches none of v*; 4th most recently pushed (keeps 2) | RETENTION_JSON[1] (nothing/*, team/app): pushed 6d ago (keeps 5d)",
    );
  });

  it("never removes an immutable tag", () => {
    const immutable = parseImmutableTags("*:ci-1", []);
    const d = decide("team/app", history, rules([{ repositories: ["*"], keep: { most_recent: 1 } }]), immutable, NOW)!;
    expect(d.kept.find((v) => v.tag === "ci-1")!.why).toBe("immutable (IMMUTABLE_TAGS rule *:ci-1)");
    expect(d.removed).toHaveLength(history.length - 2);
  });

  it("orders tags pushed at the same moment by name, whatever the listing order", () => {
    const same = tags({ b: 1, a: 1, c: 1 });
    const d = decide("x", same.reverse(), rules([{ repositories: ["*"], keep: { most_recent: 2 } }]), none, NOW)!;
    expect(d.kept.map((v) => v.tag)).toEqual(["a", "b"]);
    expect(d.removed.map((v) => v.tag)).toEqual(["c"]);
  });
});

describe("configuration mistakes at start-up", () => {
  afterEach(() => vi.restoreAllMocks());

  it("logs each bad rule once and serves with the good ones", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const res = await call("/v2/", { env: { IMMUTABLE_TAGS: "*:v*,oops", RETENTION_JSON: '[{"repositories":["a/*"],"keep":{}}]' } });
    expect(res.status).toBe(200);
    const lines = warn.mock.calls.map((c) => String(c[0]));
    expect(lines).toContainEqual(expect.stringMatching(/^r2-registry: IMMUTABLE_TAGS: ignoring "oops"/));
    expect(lines).toContainEqual(expect.stringMatching(/^r2-registry: RETENTION_JSON\[0\] is left out/));
  });
});
