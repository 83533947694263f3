import { repositoryPattern, tagPattern, type Pattern } from "./patterns";

/** One rule of `IMMUTABLE_TAGS`: tags matching `tag` in repositories matching `repository`. */
export interface ImmutableRule {
  /** The rule as written, e.g. `prod/*:*`. */
  text: string;
  repository: Pattern;
  tag: Pattern;
}

/**
 * The immutable-tag rules (`IMMUTABLE_TAGS`). A tag one of them matches may be created, and pushed
 * again with the same digest, but never moved to another digest or deleted.
 *
 * @example
 * const rules = parseImmutableTags("*:v*,prod/*:*", []);
 * rules.ruleFor("team/app", "v1.0")?.text; // "*:v*"
 * rules.ruleFor("team/app", "main"); // undefined
 */
export class ImmutableTags {
  constructor(readonly rules: readonly ImmutableRule[]) {}

  /** True when there are no rules: nothing is immutable. */
  get empty(): boolean {
    return this.rules.length === 0;
  }

  /** True when some tag of repository `name` may be immutable (a rule's repository pattern matches). */
  covers(name: string): boolean {
    return this.rules.some((rule) => rule.repository.test(name));
  }

  /** The first rule making `name:tag` immutable, or undefined. */
  ruleFor(name: string, tag: string): ImmutableRule | undefined {
    return this.rules.find((rule) => rule.repository.test(name) && rule.tag.test(tag));
  }
}

/**
 * Parses `IMMUTABLE_TAGS`: comma-separated `<repository pattern>:<tag pattern>` rules, `*`
 * matching any characters (`/` too). Never throws: a bad rule is reported in `warnings` and left
 * out, the others apply. Empty or unset: no immutable tags.
 *
 * @example
 * parseImmutableTags("*:v*, prod/*:*, *:latest-stable", warnings).rules.length; // 3
 */
export function parseImmutableTags(raw: unknown, warnings: string[]): ImmutableTags {
  const rules: ImmutableRule[] = [];
  for (const entry of String(raw ?? "").split(",").map((e) => e.trim())) {
    if (entry === "") continue;
    const parts = entry.split(":");
    const problem =
      parts.length !== 2
        ? "a rule is <repository pattern>:<tag pattern>, e.g. *:v* or prod/*:*"
        : [repositoryPattern(parts[0]!), tagPattern(parts[1]!)].find((p): p is string => typeof p === "string");
    if (problem !== undefined) {
      warnings.push(`IMMUTABLE_TAGS: ignoring ${JSON.stringify(entry)}: ${problem}`);
      continue;
    }
    rules.push({ text: entry, repository: repositoryPattern(parts[0]!) as Pattern, tag: tagPattern(parts[1]!) as Pattern });
  }
  return new ImmutableTags(rules);
}
