import { reachesEveryRepository } from "../auth";
import { RegistryError } from "../errors";
import { describeRetention, retainAll, retainRepository, type RetentionContext, type RetentionRun } from "../policy/run";
import type { Registry } from "../registry/registry";
import { nameParam, type Context, type Handler } from "./context";
import { answersReport, flag, invalid, type RunAnswers } from "./run-query";

const RETENTION_ANSWERS: RunAnswers = { run: "a retention run", lists: "tags and digests", plain: "what it got through" };

function retention({ registry, config, bucket }: Context): RetentionContext {
  if (!bucket) throw new RegistryError("UNSUPPORTED", "this storage keeps no retention runs");
  const local: Registry = registry.withoutUpstreams?.() ?? registry;
  return { registry: local, bucket, config };
}

/** The answer: the report, or only how far the run got; a `Link` to the request that goes on. */
function answer(run: RetentionRun, report: boolean, next: string | undefined): Response {
  const { complete, progress } = run;
  const body = report ? { success: true, ...run } : { success: true, complete, ...(run.next ? { next: run.next } : {}), progress };
  const headers: Record<string, string> = { "Content-Type": "application/json; charset=utf-8" };
  if (next !== undefined) headers.Link = `<${next}>; rel="next"`;
  return new Response(JSON.stringify(body), { status: 200, headers });
}

/**
 * `POST /v2/<name>/retention`: applies the retention rules (`RETENTION_JSON`) to one repository:
 * removes the tags no keep clause keeps (like `DELETE /v2/<name>/manifests/<tag>`), at most
 * `RETENTION_MAX_TAGS` (then `"complete":false`: post again). `dry_run=true` removes nothing and
 * answers which tags would go and why; `report=true` answers the same after a real run. Push
 * access; `dry_run` and `report` need pull too.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/ci/app/retention?dry_run=true'
 */
export const retainOne: Handler = async (request, context) => {
  const { url, principal } = context;
  const name = nameParam(request);
  const dryRun = flag(url, "dry_run");
  const report = answersReport(url, dryRun, principal, RETENTION_ANSWERS, name);
  const startedAt = Date.now();
  const found = await retainRepository(retention(context), name, { dryRun, now: startedAt });
  const complete = (found?.pending ?? 0) === 0;
  const run: RetentionRun = {
    dryRun,
    complete,
    startedAt: new Date(startedAt).toISOString(),
    repositories: found ? [found] : [],
    progress: { repositories: found ? 1 : 0, removed: found?.removed.length ?? 0 },
  };
  console.log(`r2-registry: retention of ${name}${dryRun ? " (dry run)" : ""}: ${found ? `${found.removed.length} tags, ${found.pending} left` : "no rule names it"}`);
  return answer(run, report, complete ? undefined : `${url.pathname}${url.search}`);
};

/**
 * `POST /v2/_retention`: a retention run over every repository a rule names, in bounded
 * invocations (`RETENTION_MAX_REPOSITORIES`, `RETENTION_MAX_TAGS`): until the answer is
 * `"complete":true`, `cursor=<next>` goes on (a `Link` header says how). `cursor=scheduled` goes
 * on with the cron trigger's run. Takes `dry_run` and `report` as above; needs access to every
 * repository.
 *
 * @example
 * curl -u user:pass -X POST 'https://registry.example/v2/_retention?dry_run=true'
 */
export const retainEvery: Handler = async (_request, context) => {
  const { url, principal } = context;
  if (!reachesEveryRepository(principal)) {
    throw new RegistryError("DENIED", "a registry-wide retention run needs access to every repository; use POST /v2/<name>/retention");
  }
  const cursor = url.searchParams.get("cursor") ?? undefined;
  if (cursor !== undefined && !/^[0-9a-z-]{1,64}$/.test(cursor)) throw invalid("cursor must be the `next` of an earlier answer");
  const dryRun = flag(url, "dry_run");
  const report = answersReport(url, dryRun, principal, RETENTION_ANSWERS);
  const run = await retainAll(retention(context), { dryRun, ...(cursor !== undefined ? { cursor } : {}) });
  console.log(`r2-registry: retention of all repositories: ${describeRetention(run)}`);
  const query = new URLSearchParams({ cursor: run.next ?? "" });
  if (url.searchParams.has("report")) query.set("report", url.searchParams.get("report")!);
  return answer(run, report, run.next === undefined ? undefined : `${url.pathname}?${query.toString()}`);
};
