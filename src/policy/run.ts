import type { Config } from "../config";
import { RegistryError } from "../errors";
import type { Registry } from "../registry/registry";
import type { RetentionLimits } from "./config";
import { decide, type Verdict } from "./retention";

/** What a retention run did (or, in a dry run, would do) in one repository. */
export interface RepositoryRetention {
  name: string;
  /** The rules naming it (positions in `RETENTION_JSON`). */
  rules: number[];
  /** How many tags it had. */
  total: number;
  /** Tags removed (in a dry run: that would be), each with why no keep clause kept it. */
  removed: Verdict[];
  /** Tags kept, each with the clause (or immutable rule) that kept it. */
  kept: Verdict[];
  /** Tags to remove left for the next invocation: the budget ran out. */
  pending: number;
  /** Tags pushed again (to another digest) after they were judged: left alone. */
  changed: string[];
  /** Dry run: manifests every tag of which would be removed (an untagged collection frees them if nothing else reaches them). */
  untagged?: string[];
  /**
   * `delete_untagged`, after removing tags: what the repository's untagged collection removed, and
   * whether it finished (a collection is bounded as any is: `GC_MAX_OPERATIONS`).
   */
  collected?: { manifests: number; blobs: number; bytes: number; complete: boolean };
  /** What went wrong here; a registry-wide run goes on with the next repository. */
  error?: string;
}

/** One invocation of a retention run, and how far the whole run got. */
export interface RetentionRun {
  /** The run's cursor: `POST /v2/_retention?cursor=<id>` goes on with it (`scheduled`: the cron's). */
  id?: string;
  dryRun: boolean;
  /** False when the budget ran out: `next` goes on. */
  complete: boolean;
  next?: string;
  /** When the run started: "pushed within" is judged against this time in every invocation. */
  startedAt: string;
  /** The repositories a rule names that this invocation judged. */
  repositories: RepositoryRetention[];
  /** The whole run so far: repositories judged, tags removed (or listed), the last repository done. */
  progress: { repositories: number; removed: number; last?: string };
}

/** What one invocation may still do: {@link RetentionLimits}, and the collections it may start. */
export interface Allowance extends RetentionLimits {
  /**
   * Untagged collections (`delete_untagged`) it may still start: one, since each may make up to
   * `GC_MAX_OPERATIONS` R2 calls; a registry-wide run stops after the repository it collected.
   */
  collections: number;
}

/** What a run works with: the local registry (immutability enforced), its bucket and the config. */
export interface RetentionContext {
  registry: Registry;
  bucket: R2Bucket;
  config: Config;
}

/** The cursor of the cron trigger's run. */
export const SCHEDULED = "scheduled";
const RUNS_PREFIX = "_retention/runs/";
/** Progress of runs nobody continued for this long is dropped. */
const STALE_MS = 7 * 86_400_000;

/** A run's saved progress at `_retention/runs/<id>`. */
interface RunState {
  dryRun: boolean;
  startedAt: number;
  /** Where the run is in the catalog: the next invocation starts after this name. */
  after?: string;
  /** The last repository a rule names that the run finished. */
  last?: string;
  repositories: number;
  removed: number;
}

/** True when some retention rule names repository `name`. */
function named(config: Config, name: string): boolean {
  return config.policy.retention.some((rule) => rule.repositories.some((pattern) => pattern.test(name)));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Applies the retention rules to one repository: judges every tag (see `decide`), then removes
 * those no keep clause keeps, as `DELETE /v2/<name>/manifests/<tag>` does (a tag pushed to another
 * digest since it was judged stays), at most `budget.tags` of them; with `delete_untagged`, then
 * collects the repository in `untagged` mode (if `budget.collections` allows: else the next
 * invocation that removes tags there does). A dry run removes nothing and lists them all.
 * Undefined when no rule names the repository.
 *
 * @example
 * const report = await retainRepository(context, "ci/app", { dryRun: true });
 * report?.removed.map((v) => `${v.tag}: ${v.why}`);
 */
export async function retainRepository(
  context: RetentionContext,
  name: string,
  options: { dryRun: boolean; now?: number; budget?: Allowance },
): Promise<RepositoryRetention | undefined> {
  const { registry, config } = context;
  if (!named(config, name)) return undefined;
  if (!registry.tagRecords) throw new RegistryError("UNSUPPORTED", "this storage cannot tell when tags were pushed");
  const budget = options.budget ?? allowance(config);
  budget.repositories--;
  const records = [];
  for await (const record of registry.tagRecords(name)) records.push(record);
  const decision = decide(name, records, config.policy.retention, config.policy.immutable, options.now ?? Date.now())!;
  const report: RepositoryRetention = { name, rules: decision.rules, total: records.length, removed: [], kept: decision.kept, pending: 0, changed: [] };
  if (options.dryRun) {
    report.removed = decision.removed;
    budget.tags -= decision.removed.length;
    const kept = new Set(decision.kept.map((verdict) => verdict.digest));
    report.untagged = [...new Set(decision.removed.map((verdict) => verdict.digest).filter((digest) => !kept.has(digest)))];
    return report;
  }
  for (const [i, verdict] of decision.removed.entries()) {
    if (budget.tags <= 0) {
      report.pending = decision.removed.length - i;
      break;
    }
    const current = await registry.statManifest(name, verdict.tag);
    if (current?.digest !== verdict.digest) {
      if (current) report.changed.push(verdict.tag);
      continue;
    }
    if (await registry.deleteManifest(name, verdict.tag)) {
      report.removed.push(verdict);
      budget.tags--;
    }
  }
  if (decision.deleteUntagged && report.removed.length > 0 && budget.collections > 0) {
    budget.collections--;
    try {
      if (!registry.collect) throw new Error("this storage has no garbage collection");
      const found = await registry.collect(name, { mode: "untagged", graceMs: config.gc.graceMs, dryRun: false });
      report.collected = { manifests: found.manifests.length, blobs: found.blobs.length, bytes: found.bytes, complete: found.complete };
    } catch (error) {
      report.error = `the untagged collection (delete_untagged) failed: ${message(error)}`;
    }
  }
  return report;
}

/** A fresh invocation's allowance. */
function allowance(config: Config): Allowance {
  return { ...config.policy.limits, collections: 1 };
}

async function loadState(bucket: R2Bucket, id: string): Promise<RunState | undefined> {
  const object = await bucket.get(`${RUNS_PREFIX}${id}`);
  if (!object) return undefined;
  try {
    const state = JSON.parse(await object.text()) as RunState;
    return typeof state.startedAt === "number" ? state : undefined;
  } catch {
    return undefined;
  }
}

/** Drops the progress of runs nobody went on with for a week (one listing). */
async function dropStale(bucket: R2Bucket): Promise<void> {
  const page = await bucket.list({ prefix: RUNS_PREFIX, limit: 1000 });
  const stale = page.objects.filter((object) => Date.now() - object.uploaded.getTime() > STALE_MS).map((object) => object.key);
  if (stale.length > 0) await bucket.delete(stale);
}

/**
 * One invocation of a registry-wide retention run: the repositories in catalog order, each as
 * {@link retainRepository} does, until `RETENTION_MAX_REPOSITORIES` repositories a rule names are
 * judged or `RETENTION_MAX_TAGS` tags removed. Its progress is kept at `_retention/runs/<id>`;
 * `cursor` goes on with a run, with the options it started with (`scheduled`: the cron trigger's
 * run, which only `scheduled: true` starts, anew once the last one is complete). A repository that
 * fails is reported and skipped.
 *
 * @example
 * let run = await retainAll(context, { dryRun: false });
 * while (!run.complete) run = await retainAll(context, { dryRun: false, cursor: run.next });
 */
export async function retainAll(context: RetentionContext, options: { dryRun: boolean; cursor?: string; scheduled?: boolean }): Promise<RetentionRun> {
  const { bucket, registry } = context;
  let id = options.scheduled ? SCHEDULED : options.cursor;
  let state: RunState | undefined;
  if (id !== undefined) {
    state = await loadState(bucket, id);
    if (!state && !options.scheduled) {
      throw new RegistryError("UNSUPPORTED", `no retention run ${id} is under way (it is complete, or was never started): start one without cursor`, {
        status: 400,
      });
    }
  } else {
    id = crypto.randomUUID();
    await dropStale(bucket);
  }
  state ??= { dryRun: options.scheduled ? false : options.dryRun, startedAt: Date.now(), repositories: 0, removed: 0 };
  const budget = allowance(context.config);
  const done: RepositoryRetention[] = [];
  let complete = true;
  scan: for (;;) {
    const page = await registry.listRepositories({ n: 1000, ...(state.after !== undefined ? { last: state.after } : {}) });
    if (page.items.length === 0 && page.more) {
      // The catalog of an older bucket is still being indexed (a slice per call): go on next time.
      complete = false;
      break;
    }
    for (const name of page.items) {
      if (!named(context.config, name)) {
        state.after = name;
        continue;
      }
      if (budget.repositories <= 0 || budget.tags <= 0) {
        complete = false;
        break scan;
      }
      let report: RepositoryRetention;
      try {
        report = (await retainRepository(context, name, { dryRun: state.dryRun, now: state.startedAt, budget }))!;
      } catch (error) {
        console.error(`r2-registry: retention of ${name} failed:`, error);
        report = { name, rules: [], total: 0, removed: [], kept: [], pending: 0, changed: [], error: message(error) };
      }
      done.push(report);
      state.removed += report.removed.length;
      if (report.pending > 0) {
        // The budget ran out inside it: the next invocation judges it again and goes on.
        complete = false;
        break scan;
      }
      state.after = name;
      state.last = name;
      state.repositories++;
      if (budget.collections === 0) {
        // It ran the invocation's collection: the next invocation goes on after it.
        complete = false;
        break scan;
      }
    }
    if (!page.more) break;
  }
  const key = `${RUNS_PREFIX}${id}`;
  if (complete) await bucket.delete(key);
  else await bucket.put(key, JSON.stringify(state));
  return {
    id,
    dryRun: state.dryRun,
    complete,
    ...(complete ? {} : { next: id }),
    startedAt: new Date(state.startedAt).toISOString(),
    repositories: done,
    progress: { repositories: state.repositories, removed: state.removed, ...(state.last !== undefined ? { last: state.last } : {}) },
  };
}

/**
 * One line on what an invocation of a retention run did and how far the run is.
 *
 * @example
 * console.log(`r2-registry: scheduled retention: ${describeRetention(run)}`);
 */
export function describeRetention(run: RetentionRun): string {
  const removed = run.repositories.reduce((sum, r) => sum + r.removed.length, 0);
  const failed = run.repositories.filter((r) => r.error !== undefined).map((r) => r.name);
  const verb = run.dryRun ? "would remove" : "removed";
  return (
    `${run.dryRun ? "dry run: " : ""}${run.repositories.length} repositories in this invocation, ${verb} ${removed} tags` +
    (failed.length > 0 ? ` (failed: ${failed.join(", ")})` : "") +
    (run.complete
      ? `; complete (${run.progress.repositories} repositories, ${run.progress.removed} tags since ${run.startedAt})`
      : `; ${run.progress.repositories} repositories so far (last: ${run.progress.last ?? "none"}), goes on with cursor ${run.next}`)
  );
}
