import { reachesEveryRepository } from "../auth";
import { MAX_UPLOAD_AGE_SECONDS, type Config } from "../config";
import { RegistryError } from "../errors";
import type { CollectAllReport, CollectOptions } from "../registry/r2/gc";
import type { Registry } from "../registry/registry";
import { nameParam, type Handler } from "./context";
import { answersReport, flag, invalid, type RunAnswers } from "./run-query";

function seconds(url: URL, key: string, fallbackMs: number): number {
  const value = url.searchParams.get(key);
  if (value === null) return fallbackMs;
  if (!/^\d{1,10}$/.test(value)) throw invalid(`${key} must be a whole number of seconds`);
  return Number(value) * 1000;
}

/**
 * Reads `mode`, `dry_run`, `grace` (seconds) and `cursor` (continue a collection, with the options
 * it started with) from the query, with the configured defaults.
 */
function collectOptions(url: URL, config: Config): CollectOptions {
  const mode = url.searchParams.get("mode") ?? "unreferenced";
  if (mode !== "unreferenced" && mode !== "untagged") throw invalid("mode must be either 'unreferenced' or 'untagged'");
  const cursor = url.searchParams.get("cursor");
  if (cursor !== null && !/^[0-9a-z-]{1,64}$/.test(cursor)) throw invalid("cursor must be the `next` of an earlier answer");
  return { mode, dryRun: flag(url, "dry_run"), graceMs: seconds(url, "grace", config.gc.graceMs), ...(cursor !== null ? { cursor } : {}) };
}

/**
 * The `Link` to the request that continues a collection, if it is not complete: the cursor, and
 * `report` and `dry_run` (so a continuation is allowed and answered as the start was).
 */
function continuation(url: URL, next: string | undefined, dryRun: boolean): Record<string, string> {
  if (next === undefined) return {};
  const query = new URLSearchParams({ cursor: next });
  const report = url.searchParams.get("report");
  if (report !== null) query.set("report", report);
  if (dryRun) query.set("dry_run", "true");
  return { Link: `<${url.pathname}?${query.toString()}>; rel="next"` };
}

const GC_ANSWERS: RunAnswers = { run: "a garbage collection", lists: "manifests, tags and blobs", plain: '{"success":true}' };

function local(registry: Registry): Registry {
  return registry.withoutUpstreams?.() ?? registry;
}

function json(value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status: 200, headers: { "Content-Type": "application/json; charset=utf-8", ...headers } });
}

/**
 * `POST /v2/<name>/gc?mode=unreferenced|untagged`: garbage collection of one repository, as in
 * serverless-registry (answers `{"success":true}`). `dry_run=true` deletes nothing and lists what
 * would go and how many bytes that frees; `report=true` lists the same after a real run;
 * `grace=<seconds>` overrides `GC_GRACE_PERIOD` (manifests and blobs newer than it stay). Push
 * access runs it; `dry_run` and `report` answer names and digests, so they need pull too. One
 * request does a bounded part of the work (`GC_MAX_OPERATIONS`, `GC_MAX_SECONDS`): a repository too
 * big for it answers `"complete":false` with `next`, and a `Link` to the request that goes on.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/team/app/gc?mode=untagged&dry_run=true'
 * curl -u user:pass -X POST 'https://registry.example/v2/team/app/gc?cursor=<next>'
 */
export const collectRepository: Handler = async (request, { registry, config, url, principal }) => {
  const name = nameParam(request);
  const options = collectOptions(url, config);
  const report = answersReport(url, options.dryRun === true, principal, GC_ANSWERS, name);
  const store = local(registry);
  if (!store.collect) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
  const found = await store.collect(name, options);
  console.log(
    `r2-registry: gc ${name} (${found.mode}${found.dryRun ? ", dry run" : ""}): ${found.manifests.length} manifests, ${found.blobs.length} blobs, ${found.bytes} bytes` +
      (found.complete ? "" : `; not complete, goes on with cursor ${found.next}`),
  );
  const more = continuation(url, found.next, found.dryRun);
  if (report) return json({ success: true, ...found }, more);
  return json(found.complete ? { success: true } : { success: true, complete: false, next: found.next }, more);
};

/**
 * `POST /v2/_gc?mode=…`: garbage collection of every repository, then removal of abandoned
 * uploads (`upload_age=<seconds>` overrides `GC_UPLOAD_MAX_AGE`) and of upload bytes nothing uses.
 * Needs push access to every repository (and pull too for `dry_run` or `report`). Takes `dry_run`,
 * `grace` and `report` as above. Each request does a bounded part; the answer says how far the run
 * got (`progress`) and, until it is `complete`, how to go on (`next`, and a `Link` to
 * `POST /v2/_gc?cursor=<next>`). `cursor=scheduled` goes on with the cron trigger's run.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/_gc?mode=unreferenced&dry_run=true'
 * curl -u user:pass -X POST 'https://registry.example/v2/_gc?cursor=<next>'
 */
export const collectRegistry: Handler = async (_request, { registry, config, url, principal }) => {
  if (!reachesEveryRepository(principal)) {
    throw new RegistryError("DENIED", "a registry-wide garbage collection needs access to every repository");
  }
  const uploadMaxAgeMs = seconds(url, "upload_age", config.gc.uploadMaxAgeMs);
  // R2 aborts unfinished multipart uploads after 7 days: an older upload cannot be resumed anyway.
  if (uploadMaxAgeMs > MAX_UPLOAD_AGE_SECONDS * 1000) {
    throw invalid(`upload_age may be at most ${MAX_UPLOAD_AGE_SECONDS} seconds (7 days, after which R2 aborts unfinished multipart uploads)`);
  }
  const options = { ...collectOptions(url, config), uploadMaxAgeMs };
  const report = answersReport(url, options.dryRun === true, principal, GC_ANSWERS);
  const store = local(registry);
  if (!store.collectAll) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
  const found = await store.collectAll(options);
  console.log(`r2-registry: gc of all repositories: ${describeRun(found)}`);
  const { complete, next, progress } = found;
  const body = report ? { success: true, ...found } : { success: true, complete, ...(next ? { next } : {}), progress };
  return json(body, continuation(url, next, found.dryRun));
};

/**
 * One line on what an invocation of a registry-wide collection did and how far the run is.
 *
 * @example
 * console.log(`r2-registry: scheduled gc: ${describeRun(report)}`);
 */
export function describeRun(report: CollectAllReport): string {
  const manifests = report.repositories.reduce((sum, r) => sum + r.manifests.length, 0);
  const blobs = report.repositories.reduce((sum, r) => sum + r.blobs.length, 0);
  const { progress } = report;
  const failed = report.failed.length > 0 ? `: ${report.failed.map((f) => f.name).join(", ")}` : "";
  return (
    `${report.mode}${report.dryRun ? ", dry run" : ""}: ${report.repositories.length} repositories in this invocation ` +
    `(${report.failed.length} failed${failed}), ${manifests} manifests, ${blobs} blobs, ${report.uploads.sessions} abandoned uploads, ` +
    `${report.uploads.objects + report.orphans.objects} temporary objects, ${report.bytes} bytes, ${report.operations} R2 calls; ` +
    (report.complete
      ? `complete (${progress.repositories} repositories since ${progress.startedAt})`
      : `${progress.repositories} repositories so far (last: ${progress.last ?? "none"}), uploads ${progress.uploads}, orphans ${progress.orphans}; goes on with cursor ${report.next}`)
  );
}
