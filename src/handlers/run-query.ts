import { mayAccess, type Principal } from "../auth";
import { RegistryError } from "../errors";

/** A 400 for a query parameter the client got wrong. */
export function invalid(message: string): RegistryError {
  return new RegistryError("UNSUPPORTED", message, { status: 400 });
}

/**
 * A boolean query parameter (`true`, `1`, `yes` or empty; `false`, `0`, `no`); false when absent.
 *
 * @example
 * flag(new URL("https://r/v2/a/gc?dry_run=true"), "dry_run"); // true
 */
export function flag(url: URL, key: string): boolean {
  const value = url.searchParams.get(key);
  if (value === null) return false;
  if (/^(|1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw invalid(`${key} must be true or false`);
}

/** What a run (garbage collection, retention) answers, for the refusal's message. */
export interface RunAnswers {
  /** "a garbage collection" */
  run: string;
  /** What a report lists: "manifests, tags and blobs". */
  lists: string;
  /** What a run without a report answers: `{"success":true}`. */
  plain: string;
}

/**
 * Whether a run answers what it found (`dry_run=true` or `report=true`). Such an answer names what
 * the repository holds, so it needs pull as well as the push a run needs: checked before anything
 * is done.
 *
 * @example
 * const report = answersReport(url, dryRun, principal, { run: "a retention run", lists: "tags and digests", plain: "what it got through" }, name);
 */
export function answersReport(url: URL, dryRun: boolean, principal: Principal, answers: RunAnswers, name?: string): boolean {
  const report = dryRun || flag(url, "report");
  if (report && !mayAccess(principal, "pull", name)) {
    const where = name === undefined ? "" : ` from ${name}`;
    throw new RegistryError(
      "DENIED",
      `${principal.username} may not pull${where}: ${answers.run} with dry_run or report lists ${answers.lists}, so it needs pull as well as push (a run without them answers only ${answers.plain})`,
      { detail: name === undefined ? null : { name } },
    );
  }
  return report;
}
