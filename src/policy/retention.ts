import { z } from "zod";
import type { TagRecord } from "../registry/registry";
import type { ImmutableTags } from "./immutable";
import { repositoryPattern, tagPattern, type Pattern } from "./patterns";

/** One rule of `RETENTION_JSON`, validated. */
export interface RetentionRule {
  /** Its position in `RETENTION_JSON`, as messages name it (`RETENTION_JSON[0]`). */
  index: number;
  repositories: Pattern[];
  keep: {
    tags?: Pattern[];
    mostRecent?: number;
    pushedWithin?: { text: string; ms: number };
  };
  /** After its tags are removed, the repository is collected in `untagged` mode. */
  deleteUntagged: boolean;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/**
 * A duration such as `30d`, `12h`, `90m`, `2w` or `45s`, in milliseconds; undefined if malformed.
 *
 * @example
 * parseDuration("30d"); // 2_592_000_000
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,6})([smhdw])$/.exec(text);
  return match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : undefined;
}

const repository = z.string().transform((text, ctx) => {
  const pattern = repositoryPattern(text);
  if (typeof pattern === "string") ctx.addIssue({ code: "custom", message: pattern });
  return pattern as Pattern;
});
const tag = z.string().transform((text, ctx) => {
  const pattern = tagPattern(text);
  if (typeof pattern === "string") ctx.addIssue({ code: "custom", message: pattern });
  return pattern as Pattern;
});
const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) ctx.addIssue({ code: "custom", message: `${JSON.stringify(text)} is not a duration such as 30d, 12h, 90m, 2w or 45s` });
  return { text, ms: ms ?? 0 };
});
// Strict objects: a misspelt clause ("most_recnt") must not leave a rule that keeps less than meant.
const ruleSchema = z.strictObject({
  repositories: z.array(repository).min(1, "needs at least one repository pattern"),
  keep: z
    .strictObject({
      tags: z.array(tag).min(1).optional(),
      most_recent: z.number().int().nonnegative().max(1_000_000).optional(),
      pushed_within: duration.optional(),
    })
    .refine((k) => k.tags !== undefined || k.most_recent !== undefined || k.pushed_within !== undefined, {
      message: "needs at least one of tags, most_recent, pushed_within (a rule keeping nothing would delete every tag)",
    }),
  delete_untagged: z.boolean().optional(),
});

/**
 * Parses `RETENTION_JSON`: a JSON array of rules such as
 * `{"repositories":["team/*"],"keep":{"tags":["v*","main"],"most_recent":10,"pushed_within":"30d"},"delete_untagged":true}`.
 * Never throws: a rule that does not validate (an unknown key included) is reported in `warnings`
 * and left out, never applied half-understood; bad JSON leaves no rules.
 *
 * @example
 * parseRetention('[{"repositories":["ci/*"],"keep":{"most_recent":5}}]', warnings)[0]?.keep.mostRecent; // 5
 */
export function parseRetention(raw: unknown, warnings: string[]): RetentionRule[] {
  const text = typeof raw === "string" ? raw.trim() : "";
  if (text === "") return [];
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (error) {
    warnings.push(`RETENTION_JSON is not valid JSON (${(error as Error).message}); no retention rule applies`);
    return [];
  }
  if (!Array.isArray(list)) {
    warnings.push("RETENTION_JSON must be a JSON array of {repositories, keep, delete_untagged?}; no retention rule applies");
    return [];
  }
  const rules: RetentionRule[] = [];
  list.forEach((entry, index) => {
    const parsed = ruleSchema.safeParse(entry);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message)).join("; ");
      warnings.push(`RETENTION_JSON[${index}] is left out: ${problems}`);
      return;
    }
    const { repositories, keep, delete_untagged } = parsed.data;
    rules.push({
      index,
      repositories,
      keep: {
        ...(keep.tags ? { tags: keep.tags } : {}),
        ...(keep.most_recent !== undefined ? { mostRecent: keep.most_recent } : {}),
        ...(keep.pushed_within ? { pushedWithin: keep.pushed_within } : {}),
      },
      deleteUntagged: delete_untagged === true,
    });
  });
  return rules;
}

/** What retention decided for one tag, and why. */
export interface Verdict {
  tag: string;
  digest: string;
  /** When the tag was last pushed (ISO 8601). */
  pushed: string;
  why: string;
}

/** What retention decides for one repository. */
export interface Decision {
  /** The rules naming the repository (their positions in `RETENTION_JSON`). */
  rules: number[];
  /** Oldest push first. */
  removed: Verdict[];
  /** Most recent push first. */
  kept: Verdict[];
  /** Whether a rule asks for an untagged collection after the tags go. */
  deleteUntagged: boolean;
}

function ordinal(n: number): string {
  const tens = n % 100;
  if (tens >= 11 && tens <= 13) return `${n}th`;
  return `${n}${["th", "st", "nd", "rd"][n % 10] ?? "th"}`;
}

/** A duration for people: `12d 4h`, `3h 5m`, `40s`. */
export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

function label(rule: RetentionRule): string {
  return `RETENTION_JSON[${rule.index}] (${rule.repositories.map((p) => p.text).join(", ")})`;
}

/**
 * Which tags of repository `name` the retention rules remove, each with the reason. A tag is kept
 * when a keep clause of any rule naming the repository keeps it (its name matches `tags`, it is
 * among the `most_recent` last pushed, or it was pushed within `pushed_within` of `now`), or when it
 * is immutable. Undefined when no rule names the repository (then every tag stays).
 *
 * @example
 * const decision = decide("ci/app", tags, rules, immutable, Date.now());
 * decision?.removed.map((v) => `${v.tag}: ${v.why}`);
 */
export function decide(name: string, tags: TagRecord[], rules: RetentionRule[], immutable: ImmutableTags, now: number): Decision | undefined {
  const applicable = rules.filter((rule) => rule.repositories.some((pattern) => pattern.test(name)));
  if (applicable.length === 0) return undefined;
  // Most recently pushed first; equal times in tag order, so a decision never depends on listing order.
  const order = [...tags].sort((a, b) => b.pushed.getTime() - a.pushed.getTime() || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  const rank = new Map(order.map((record, i) => [record.tag, i + 1]));
  const decision: Decision = { rules: applicable.map((r) => r.index), removed: [], kept: [], deleteUntagged: applicable.some((r) => r.deleteUntagged) };
  for (const record of order) {
    const verdict = { tag: record.tag, digest: record.digest, pushed: record.pushed.toISOString() };
    const fixed = immutable.ruleFor(name, record.tag);
    if (fixed) {
      decision.kept.push({ ...verdict, why: `immutable (IMMUTABLE_TAGS rule ${fixed.text})` });
      continue;
    }
    const place = rank.get(record.tag)!;
    const ago = now - record.pushed.getTime();
    let keptBy: string | undefined;
    const misses: string[] = [];
    for (const rule of applicable) {
      const { tags: names, mostRecent, pushedWithin } = rule.keep;
      const why: string[] = [];
      const match = names?.find((pattern) => pattern.test(record.tag));
      if (match) keptBy ??= `${label(rule)}: matches ${match.text}`;
      else if (names) why.push(`matches none of ${names.map((p) => p.text).join(", ")}`);
      if (mostRecent !== undefined) {
        if (place <= mostRecent) keptBy ??= `${label(rule)}: ${ordinal(place)} most recently pushed (keeps ${mostRecent})`;
        else why.push(`${ordinal(place)} most recently pushed (keeps ${mostRecent})`);
      }
      if (pushedWithin) {
        if (ago <= pushedWithin.ms) keptBy ??= `${label(rule)}: pushed ${age(ago)} ago (keeps ${pushedWithin.text})`;
        else why.push(`pushed ${age(ago)} ago (keeps ${pushedWithin.text})`);
      }
      misses.push(`${label(rule)}: ${why.join("; ")}`);
    }
    if (keptBy) decision.kept.push({ ...verdict, why: keptBy });
    else decision.removed.push({ ...verdict, why: misses.join(" | ") });
  }
  // The oldest go first (a run whose budget runs out removes the oldest).
  decision.removed.reverse();
  return decision;
}
