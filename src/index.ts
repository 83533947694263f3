import { authenticate, challengeFor, issueToken, TOKEN_PATH, type Principal } from "./auth";
import { configFor, type Config } from "./config";
import { addCorsHeaders, corsPreflight, refuseCrossSite } from "./cors";
import type { Env } from "./env";
import { errorResponse, RegistryError } from "./errors";
import { describeRun } from "./handlers/gc";
import { consumeNotifications, notifyScheduledCollection, withNotifications } from "./events";
import { R2Registry } from "./registry/r2";
import { invocationBucket } from "./registry/r2/bucket";
import { metered } from "./registry/r2/metered";
import { ProxyRegistry, Upstream } from "./registry/proxy";
import { withPolicies } from "./policy";
import { scheduledRetention } from "./policy/scheduled";
import type { Registry } from "./registry/registry";
import { withHeaders } from "./http";
import { fixedLength, pump } from "./streams";
import { allowedMethods, createRouter } from "./router";
import { isUiPath, serveUi } from "./ui/serve";

const router = createRouter();

function isV2(pathname: string): boolean {
  return pathname === "/v2" || pathname.startsWith("/v2/");
}

async function handle(request: Request, env: Env, ctx: ExecutionContext, url: URL, config: Config): Promise<Response> {
  // A load balancer's health check: no credentials needed, nothing revealed.
  if (url.pathname === "/" && (request.method === "GET" || request.method === "HEAD")) {
    return new Response(request.method === "HEAD" ? null : "r2-registry\n", {
      headers: { "Content-Type": "text/plain; charset=utf-8" },
    });
  }
  // The web UI: static files, no credentials needed (the page signs in against /v2/ itself).
  if (isUiPath(url.pathname)) return serveUi(request, url);
  if (!env.REGISTRY) {
    console.error("r2-registry: no R2 bucket is bound as REGISTRY; add it to wrangler.toml (see wrangler.toml.example)");
    throw new RegistryError("UNAVAILABLE", "the registry is misconfigured: no R2 bucket is bound as REGISTRY", {
      status: 500,
    });
  }
  if (url.pathname === TOKEN_PATH && config.anonymousPull && request.method === "GET") return issueToken(request, config);
  const principal = await authenticate(request, config);
  if (!isV2(url.pathname)) throw new RegistryError("NOT_FOUND", `no such endpoint: ${url.pathname}`);
  // LOG_R2_OPERATIONS: count what each request costs in R2 operations, and log it, including the
  // work it leaves to waitUntil (e.g. a pull-through copy), once that is done too.
  if (!config.logR2Operations) {
    const bucket = invocationBucket(env.REGISTRY, config.r2Limits);
    return await route(request, bucket, config, principal, url, (promise) => ctx.waitUntil(promise), env.NOTIFICATIONS_QUEUE);
  }
  const meter = metered(env.REGISTRY);
  const background: Promise<unknown>[] = [];
  const waitUntil = (promise: Promise<unknown>) => {
    background.push(promise);
    ctx.waitUntil(promise);
  };
  const began = Date.now();
  let answered = 0;
  const log = () => {
    const { classA, classB, free } = meter.usage;
    const timing = `answered in ${(answered || Date.now()) - began} ms, done in ${Date.now() - began} ms`;
    console.log(`r2-registry: R2 operations for ${request.method} ${url.pathname}: class A ${classA}, class B ${classB}, free ${free} (${timing})`);
  };
  let response: Response;
  try {
    response = await route(request, invocationBucket(meter.bucket, config.r2Limits), config, principal, url, waitUntil, env.NOTIFICATIONS_QUEUE);
  } catch (error) {
    if (background.length === 0) log();
    else ctx.waitUntil(Promise.allSettled(background).then(log));
    throw error;
  }
  // A blob stored in segments is read while its body streams: count those reads too.
  const length = Number(response.headers.get("Content-Length") ?? NaN);
  if (response.body && Number.isSafeInteger(length)) {
    const body = response.body;
    const { readable, done } = fixedLength(length, (writer) => pump(body, writer));
    background.push(done);
    response = new Response(readable, response);
  }
  answered = Date.now();
  if (background.length === 0) log();
  else ctx.waitUntil(Promise.allSettled(background).then(log));
  return response;
}

async function route(
  request: Request,
  bucket: R2Bucket,
  config: Config,
  principal: Principal,
  url: URL,
  waitUntil: (promise: Promise<unknown>) => void,
  queue: Env["NOTIFICATIONS_QUEUE"],
): Promise<Response> {
  let registry: Registry = new R2Registry(bucket, registryOptions(config));
  const { upstreams, tagTtl, timeoutMs, copyMaxSize } = config.pullThrough;
  if (upstreams.length > 0) {
    // Pull-through: local misses of manifests, blobs and tag lists go to the upstreams.
    registry = new ProxyRegistry(
      registry,
      upstreams.map((upstream) => new Upstream(upstream, timeoutMs)),
      { waitUntil, bucket, ...(tagTtl !== undefined ? { tagTtl } : {}), ...(copyMaxSize !== undefined ? { copy: { maxSize: copyMaxSize } } : {}) },
    );
  }
  // Immutable tags: every route's writes go through them, pull-through caching (inside) does not,
  // and notifications (outside) never tell of a refused write.
  registry = withPolicies(registry, config);
  // Notifications of pushes, deletes (collections' too) and asked-for pulls, after the response.
  registry = withNotifications(registry, config, { request, url, principal, waitUntil, queue });
  const response = await router.fetch(request, { registry, config, principal, url, waitUntil, bucket });
  if (response) return response;
  const allowed = allowedMethods(router, url.pathname);
  if (allowed.length > 0) {
    throw new RegistryError("UNSUPPORTED", `${request.method} is not supported here; use ${allowed.join(", ")}`, {
      headers: { Allow: allowed.join(", ") },
    });
  }
  throw new RegistryError("NOT_FOUND", `no such endpoint: ${request.method} ${url.pathname}`);
}

function failure(error: unknown, request: Request, url: URL): Response {
  if (error instanceof RegistryError) return errorResponse(error, request.method);
  console.error(`r2-registry: ${request.method} ${url.pathname} failed:`, error);
  return errorResponse(new RegistryError("UNKNOWN", "internal error; the registry's log has the details"), request.method);
}

/** The R2 registry's settings: upload part size, and the bounds of a collection's invocation. */
function registryOptions(config: Config) {
  return { partSize: config.uploadPartSize, limits: { operations: config.gc.maxOperations, ms: config.gc.maxMs } };
}

/**
 * A cron trigger's run (off unless `[triggers] crons` is configured): one bounded invocation of
 * the registry-wide collection kept at `_gc/_runs/scheduled` (every repository in `GC_MODE`,
 * then abandoned uploads and upload bytes nothing uses). It goes on where the last run stopped;
 * once that collection is complete, the next run starts a new one (no sooner than `GC_INTERVAL`
 * after the last started).
 */
async function scheduled(env: Env): Promise<void> {
  if (!env.REGISTRY) {
    console.error("r2-registry: scheduled garbage collection skipped: no R2 bucket is bound as REGISTRY");
    return;
  }
  const config = configFor(env);
  // One invocation, one bucket (R2_LIMITS counts its subrequests).
  const bucket = invocationBucket(env.REGISTRY, config.r2Limits);
  // Tag retention (RETENTION_JSON) first, so the collection below frees what the removed tags held.
  await scheduledRetention(env, bucket);
  const registry = new R2Registry(bucket, registryOptions(config));
  const { mode, graceMs, uploadMaxAgeMs, intervalMs } = config.gc;
  const report = await registry.collectAll({ mode, graceMs, uploadMaxAgeMs, dryRun: false, cursor: "scheduled", restartAfterMs: intervalMs });
  // What this invocation deleted is notified before it ends (no client waits for it).
  const sending: Promise<unknown>[] = [];
  notifyScheduledCollection(config, report.repositories, { waitUntil: (p) => sending.push(p), queue: env.NOTIFICATIONS_QUEUE });
  console.log(`r2-registry: scheduled gc: ${describeRun(report)}`);
  await Promise.allSettled(sending);
}

/**
 * The Worker: auth, then the OCI Distribution routes under `/v2/`, on the R2 bucket `REGISTRY`;
 * when a cron trigger is configured, scheduled garbage collection; and the consumer of
 * `NOTIFICATIONS_QUEUE` when it is bound.
 */
export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    const config = configFor(env);
    let response: Response;
    try {
      const preflight = corsPreflight(request, config);
      if (preflight) return preflight;
      // A browser page of an origin CORS does not trust (an HTML form on any site) may not change
      // anything with the browser's saved login: refused before auth and storage.
      refuseCrossSite(request, url, config);
      response = await handle(request, env, ctx, url, config);
    } catch (error) {
      response = failure(error, request, url);
    }
    return withHeaders(response, (headers) => {
      if (response.status === 401) headers.set("WWW-Authenticate", challengeFor(config, url.origin));
      if (isV2(url.pathname)) headers.set("Docker-Distribution-API-Version", "registry/2.0");
      // Browsers must take every answer as the type it says (a manifest or blob is never a page).
      headers.set("X-Content-Type-Options", "nosniff");
      addCorsHeaders(headers, request, config);
    });
  },

  async scheduled(_controller: ScheduledController, env: Env): Promise<void> {
    await scheduled(env);
  },

  /** The consumer of `NOTIFICATIONS_QUEUE`: delivers queued notifications, with retries. */
  async queue(batch: MessageBatch<unknown>, env: Env): Promise<void> {
    await consumeNotifications(batch, configFor(env).notifications);
  },
} satisfies ExportedHandler<Env>;
