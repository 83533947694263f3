import type { Config } from "../config";
import { RegistryError } from "../errors";
import type { CollectAllReport, CollectOptions } from "../registry/r2/gc";
import type { Registry } from "../registry/registry";
import { nameParam, type Handler } from "./context";

function invalid(message: string): RegistryError {
  return new RegistryError("UNSUPPORTED", message, { status: 400 });
}

function flag(url: URL, key: string): boolean {
  const value = url.searchParams.get(key);
  if (value === null) return false;
  if (/^(|1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw invalid(`${key} must be true or false`);
}

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

/** The `Link` to the request that continues a collection (keeping `report`), if it is not complete. */
function continuation(url: URL, next: string | undefined): Record<string, string> {
  if (next === undefined) return {};
  const query = new URLSearchParams({ cursor: next });
  const report = url.searchParams.get("report");
  if (report !== null) query.set("report", report);
  return { Link: `<${url.pathname}?${query.toString()}>; rel="next"` };
}

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
 * `grace=<seconds>` overrides `GC_GRACE_PERIOD` (manifests and blobs newer than it stay). One
 * request does a bounded part of the work (`GC_MAX_OPERATIONS`, `GC_MAX_SECONDS`): a repository too
 * big for it answers `"complete":false` with `next`, and a `Link` to the request that goes on.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/team/app/gc?mode=untagged&dry_run=true'
 * curl -u user:pass -X POST 'https://registry.example/v2/team/app/gc?cursor=<next>'
 */
export const collectRepository: Handler = async (request, { registry, config, url }) => {
  const name = nameParam(request);
  const options = collectOptions(url, config);
  const store = local(registry);
  if (!store.collect) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
  const report = await store.collect(name, options);
  console.log(
    `r2-registry: gc ${name} (${report.mode}${report.dryRun ? ", dry run" : ""}): ${report.manifests.length} manifests, ${report.blobs.length} blobs, ${report.bytes} bytes` +
      (report.complete ? "" : `; not complete, goes on with cursor ${report.next}`),
  );
  if (report.dryRun || flag(url, "report")) return json({ success: true, ...report }, continuation(url, report.next));
  return json(report.complete ? { success: true } : { success: true, complete: false, next: report.next }, continuation(url, report.next));
};

/**
 * `POST /v2/_gc?mode=…`: garbage collection of every repository, then removal of abandoned
 * uploads (`upload_age=<seconds>` overrides `GC_UPLOAD_MAX_AGE`) and of upload bytes nothing uses.
 * Needs push access to every repository. Takes `dry_run`, `grace` and `report` as above. Each
 * request does a bounded part; the answer says how far the run got (`progress`) and, until it is
 * `complete`, how to go on (`next`, and a `Link` to `POST /v2/_gc?cursor=<next>`).
 * `cursor=scheduled` goes on with the cron trigger's run.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/_gc?mode=unreferenced&dry_run=true'
 * curl -u user:pass -X POST 'https://registry.example/v2/_gc?cursor=<next>'
 */
export const collectRegistry: Handler = async (_request, { registry, config, url, principal }) => {
  if (principal.repositories !== undefined) {
    throw new RegistryError("DENIED", "a registry-wide garbage collection needs access to every repository");
  }
  const options = { ...collectOptions(url, config), uploadMaxAgeMs: seconds(url, "upload_age", config.gc.uploadMaxAgeMs) };
  const store = local(registry);
  if (!store.collectAll) throw new RegistryError("UNSUPPORTED", "this storage has no garbage collection");
  const report = await store.collectAll(options);
  console.log(`r2-registry: gc of all repositories: ${describeRun(report)}`);
  const { complete, next, progress } = report;
  const body = report.dryRun || flag(url, "report") ? { success: true, ...report } : { success: true, complete, ...(next ? { next } : {}), progress };
  return json(body, continuation(url, next));
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
