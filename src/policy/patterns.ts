/**
 * The patterns of tag policies: `*` matches any run of characters (`/` included, so `team/*`
 * covers `team/app` and `team/tools/lint`); everything else matches itself.
 */

/** Characters a repository pattern may hold: those of repository names, and `*`. */
const REPOSITORY_PATTERN = /^[a-z0-9._/*-]{1,255}$/;
/** Characters a tag pattern may hold: those of tags, and `*`. */
const TAG_PATTERN = /^[A-Za-z0-9._*-]{1,128}$/;

/** A compiled pattern and the text it was written as. */
export interface Pattern {
  text: string;
  test(value: string): boolean;
}

function compile(text: string): Pattern {
  const source = text
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, "\\$&"))
    .join(".*");
  const regex = new RegExp(`^${source}$`);
  return { text, test: (value) => regex.test(value) };
}

/**
 * A repository pattern, or why it is not one (repository names are lowercase: a pattern with
 * capitals could never match).
 *
 * @example
 * repositoryPattern("team/*").test("team/tools/lint"); // true
 * repositoryPattern("Team/*"); // "…" (a reason)
 */
export function repositoryPattern(text: string): Pattern | string {
  if (!REPOSITORY_PATTERN.test(text)) {
    return `${JSON.stringify(text)} is not a repository pattern (lowercase letters, digits, . _ - / and *)`;
  }
  return compile(text);
}

/**
 * A tag pattern, or why it is not one.
 *
 * @example
 * tagPattern("v*").test("v1.2.3"); // true
 */
export function tagPattern(text: string): Pattern | string {
  if (!TAG_PATTERN.test(text)) return `${JSON.stringify(text)} is not a tag pattern (letters, digits, . _ - and *; at most 128)`;
  return compile(text);
}
