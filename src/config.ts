import { z } from "zod";
import type { Env } from "./env";
import { parseNotifications, type NotificationsConfig } from "./events/config";
import { parsePolicies, type PolicyConfig } from "./policy/config";
import { parseRegistries, type PullThroughConfig } from "./registry/proxy/config";
import { PAID_SUBREQUESTS } from "./registry/r2/limited";

/** One pair of Basic credentials and what it may do. */
export interface Credential {
  username: string;
  password: string;
  capabilities: ReadonlySet<Capability>;
}

export type Capability = "pull" | "push";

/** The Worker's settings, parsed once from the environment. */
export interface Config {
  /** Basic credentials, read-write first. Empty when none are configured. */
  credentials: Credential[];
  /** `JWT_REGISTRY_TOKENS_PUBLIC_KEY` as given: base64 of a JWK or JWK Set. */
  jwtPublicKey: string | undefined;
  /** `JWT_AUDIENCE`: the `aud` a JWT must name, when set. */
  jwtAudience: string | undefined;
  /** `JWT_ISSUER`: the `iss` a JWT must have, when set. */
  jwtIssuer: string | undefined;
  /** `TOKEN_SECRET`: the secret the tokens of `/token` are signed with (else derived from the credentials). */
  tokenSecret: string | undefined;
  /** `LOGIN_FAILURE_LIMIT`: failed Basic logins per client address and minute before 429s (0: no limit). */
  loginFailureLimit: number;
  /** `ANONYMOUS_PULL=true`: pulls need no credentials (pushes and deletes still do). */
  anonymousPull: boolean;
  /** `CORS_ORIGINS`: which browser pages may call the registry (see {@link CorsConfig}). */
  cors: CorsConfig;
  /** `PUSH_COMPATIBILITY_MODE`, kept for compatibility. */
  pushCompatibilityMode: "full" | "none";
  /** Largest chunk a client should send in one PATCH (OCI-Chunk-Max-Length). */
  maxChunkSize: number;
  /** Size of the R2 multipart parts uploads are cut into (`UPLOAD_PART_SIZE`), if set. */
  uploadPartSize: number | undefined;
  /** Pull-through upstreams (`REGISTRIES_JSON`) and their settings. */
  pullThrough: PullThroughConfig;
  /** Garbage collection defaults (`GC_*`). */
  gc: GcConfig;
  /** Endpoints told about pushes, pulls and deletes (`NOTIFICATIONS_JSON`). */
  notifications: NotificationsConfig;
  /** `LOG_R2_OPERATIONS=true`: log how many R2 operations of each pricing class each request made. */
  logR2Operations: boolean;
  /** `R2_LIMITS=enforce`: run on a bucket that refuses what Cloudflare's R2 would (see `limited.ts`). */
  r2Limits: R2LimitsConfig;
  /** Tag policies: `IMMUTABLE_TAGS`, `RETENTION_JSON`, `RETENTION_MAX_*`. */
  policy: PolicyConfig;
  /** Problems found while parsing, logged once. */
  warnings: string[];
}

/**
 * Browser origins allowed by CORS (`CORS_ORIGINS`, comma-separated). Neither `*` nor a name: no
 * page of another origin may call the registry.
 */
export interface CorsConfig {
  /**
   * `*` was given: any page may read, with credentials it supplies itself
   * (`Access-Control-Allow-Origin: *`, never with the browser's saved login), and change nothing.
   */
  anyOrigin: boolean;
  /**
   * Origins listed by name, normalised as browsers send them (`https://ui.example`): these may
   * use the browser's saved login, push and delete.
   */
  origins: ReadonlySet<string>;
}

/** Garbage collection settings. */
export interface GcConfig {
  /** Mode of scheduled collections (`GC_MODE`, default `unreferenced`). */
  mode: "unreferenced" | "untagged";
  /** Manifests and blobs newer than this are kept (`GC_GRACE_PERIOD`, seconds; default 1 hour). */
  graceMs: number;
  /** Uploads untouched this long are abandoned (`GC_UPLOAD_MAX_AGE`, seconds; default 1 day). */
  uploadMaxAgeMs: number;
  /**
   * R2 calls one invocation of a collection may make (`GC_MAX_OPERATIONS`, default 8,000: Workers
   * Paid allows 10,000 subrequests per invocation by default, Free 50, for which 40 fits).
   */
  maxOperations: number;
  /** Wall time one invocation of a collection may take (`GC_MAX_SECONDS`, default 30). */
  maxMs: number;
  /**
   * A cron run starts a new registry-wide collection only once this long has passed since the last
   * one started; until then it finishes the last one, or does nothing (`GC_INTERVAL`, seconds;
   * default 0: each run starts a new one once the last is complete).
   */
  intervalMs: number;
}

/** Cloudflare's limits enforced on the bucket (the local simulator enforces none). */
export interface R2LimitsConfig {
  /** `R2_LIMITS=enforce`. */
  enforce: boolean;
  /** R2 calls one invocation may make (`R2_SUBREQUEST_LIMIT`, default 10,000: Workers Paid's). */
  subrequests: number;
}

/** Default of `GC_MAX_OPERATIONS`: Workers Paid's 10,000 subrequests per invocation, with headroom. */
export const DEFAULT_GC_MAX_OPERATIONS = 8000;
/** The fewest R2 calls a collection can make progress with (`GC_MAX_OPERATIONS` is raised to it). */
export const MIN_GC_OPERATIONS = 20;

/** Failed Basic logins allowed per client address and minute, by default. */
export const DEFAULT_LOGIN_FAILURE_LIMIT = 10;

/** Workers' request body limit on most plans: 100 MB. */
export const DEFAULT_MAX_CHUNK_SIZE = 100_000_000;

const positiveInt = z.coerce.number().int().positive();
/**
 * Bounds of `UPLOAD_PART_SIZE`. R2 takes multipart parts of 5 MiB to 5 GiB
 * (https://developers.cloudflare.com/r2/objects/multipart-objects/), but a body of unknown length
 * is buffered in the Worker, two parts at once, and an isolate has 128 MB for every request it
 * serves (https://developers.cloudflare.com/workers/platform/limits/#memory): 32 MiB parts hold
 * 64 MiB. A value outside is logged and the default (8 MiB) used.
 */
export const MIN_UPLOAD_PART_SIZE = 5 * 1024 * 1024;
export const MAX_UPLOAD_PART_SIZE = 32 * 1024 * 1024;
/**
 * Longest `GC_UPLOAD_MAX_AGE`: R2 aborts a multipart upload left unfinished for 7 days
 * (https://developers.cloudflare.com/r2/objects/multipart-objects/), so an older upload cannot be
 * resumed anyway. A longer value is logged and lowered to it.
 */
export const MAX_UPLOAD_AGE_SECONDS = 7 * 24 * 60 * 60;

function nonEmpty(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/**
 * Parses the environment into a {@link Config}. Never throws: a bad value is reported in
 * `warnings` and its default used.
 *
 * @example
 * const config = parseConfig({ USERNAME: "hello", PASSWORD: "world" });
 * config.credentials[0]?.capabilities.has("push"); // true
 */
export function parseConfig(env: Env): Config {
  const warnings: string[] = [];
  const credentials: Credential[] = [];
  const user = nonEmpty(env.USERNAME);
  const pass = nonEmpty(env.PASSWORD);
  if (user && pass) credentials.push({ username: user, password: pass, capabilities: new Set(["pull", "push"]) });
  else if (user || pass) warnings.push("USERNAME and PASSWORD must both be set; the read-write user is disabled");
  const roUser = nonEmpty(env.READONLY_USERNAME);
  const roPass = nonEmpty(env.READONLY_PASSWORD);
  if (roUser && roPass) credentials.push({ username: roUser, password: roPass, capabilities: new Set(["pull"]) });
  else if (roUser || roPass) warnings.push("READONLY_USERNAME and READONLY_PASSWORD must both be set; the read-only user is disabled");

  let maxChunkSize = DEFAULT_MAX_CHUNK_SIZE;
  if (env.MAX_CHUNK_SIZE !== undefined && env.MAX_CHUNK_SIZE !== "") {
    const parsed = positiveInt.safeParse(env.MAX_CHUNK_SIZE);
    if (parsed.success) maxChunkSize = parsed.data;
    else warnings.push(`MAX_CHUNK_SIZE must be a positive integer (bytes), got ${JSON.stringify(env.MAX_CHUNK_SIZE)}; using ${DEFAULT_MAX_CHUNK_SIZE}`);
  }

  let uploadPartSize: number | undefined;
  if (env.UPLOAD_PART_SIZE !== undefined && env.UPLOAD_PART_SIZE !== "") {
    const parsed = positiveInt.min(MIN_UPLOAD_PART_SIZE).max(MAX_UPLOAD_PART_SIZE).safeParse(env.UPLOAD_PART_SIZE);
    if (parsed.success) uploadPartSize = parsed.data;
    else {
      warnings.push(
        `UPLOAD_PART_SIZE must be a whole number of bytes from ${MIN_UPLOAD_PART_SIZE} (5 MiB, R2's smallest part) to ${MAX_UPLOAD_PART_SIZE} (32 MiB: two parts are held in the Worker's 128 MB), got ${JSON.stringify(env.UPLOAD_PART_SIZE)}; using the default (8 MiB)`,
      );
    }
  }

  let loginFailureLimit = DEFAULT_LOGIN_FAILURE_LIMIT;
  if (env.LOGIN_FAILURE_LIMIT !== undefined && env.LOGIN_FAILURE_LIMIT !== "") {
    const parsed = z.coerce.number().int().nonnegative().safeParse(env.LOGIN_FAILURE_LIMIT);
    if (parsed.success) loginFailureLimit = parsed.data;
    else {
      const got = JSON.stringify(env.LOGIN_FAILURE_LIMIT);
      warnings.push(`LOGIN_FAILURE_LIMIT must be a whole number (0 for no limit), got ${got}; using ${DEFAULT_LOGIN_FAILURE_LIMIT}`);
    }
  }
  const tokenSecret = nonEmpty(env.TOKEN_SECRET);
  if (tokenSecret !== undefined && tokenSecret.length < 32) {
    warnings.push("TOKEN_SECRET is short; use at least 32 random characters (e.g. `openssl rand -base64 32`)");
  }

  const seconds = (variable: string, fallback: number): number => {
    const raw = env[variable];
    if (raw === undefined || raw === "") return fallback * 1000;
    const parsed = z.coerce.number().int().nonnegative().safeParse(raw);
    if (parsed.success) return parsed.data * 1000;
    warnings.push(`${variable} must be a whole number of seconds, got ${JSON.stringify(raw)}; using ${fallback}`);
    return fallback * 1000;
  };
  let maxOperations = DEFAULT_GC_MAX_OPERATIONS;
  if (env.GC_MAX_OPERATIONS !== undefined && env.GC_MAX_OPERATIONS !== "") {
    const parsed = positiveInt.safeParse(env.GC_MAX_OPERATIONS);
    if (parsed.success) maxOperations = Math.max(MIN_GC_OPERATIONS, parsed.data);
    else warnings.push(`GC_MAX_OPERATIONS must be a positive integer, got ${JSON.stringify(env.GC_MAX_OPERATIONS)}; using ${DEFAULT_GC_MAX_OPERATIONS}`);
  }
  let gcMode: GcConfig["mode"] = "unreferenced";
  if (env.GC_MODE === "untagged") gcMode = "untagged";
  else if (env.GC_MODE !== undefined && env.GC_MODE !== "" && env.GC_MODE !== "unreferenced") {
    warnings.push(`GC_MODE must be unreferenced or untagged, got ${JSON.stringify(env.GC_MODE)}; using unreferenced`);
  }

  const limitsMode = String(env.R2_LIMITS ?? "").trim().toLowerCase();
  if (!["", "off", "enforce"].includes(limitsMode)) warnings.push(`R2_LIMITS must be enforce or off, got ${JSON.stringify(env.R2_LIMITS)}; not enforcing`);
  let subrequests: number = PAID_SUBREQUESTS;
  if (env.R2_SUBREQUEST_LIMIT !== undefined && env.R2_SUBREQUEST_LIMIT !== "") {
    const parsed = positiveInt.safeParse(env.R2_SUBREQUEST_LIMIT);
    if (parsed.success) subrequests = parsed.data;
    else warnings.push(`R2_SUBREQUEST_LIMIT must be a positive integer, got ${JSON.stringify(env.R2_SUBREQUEST_LIMIT)}; using ${PAID_SUBREQUESTS}`);
  }

  return {
    credentials,
    jwtPublicKey: nonEmpty(env.JWT_REGISTRY_TOKENS_PUBLIC_KEY),
    jwtAudience: nonEmpty(typeof env.JWT_AUDIENCE === "string" ? env.JWT_AUDIENCE.trim() : undefined),
    jwtIssuer: nonEmpty(typeof env.JWT_ISSUER === "string" ? env.JWT_ISSUER.trim() : undefined),
    tokenSecret,
    loginFailureLimit,
    anonymousPull: /^(true|1|yes)$/i.test(String(env.ANONYMOUS_PULL ?? "").trim()),
    cors: parseCors(env.CORS_ORIGINS, warnings),
    pushCompatibilityMode: env.PUSH_COMPATIBILITY_MODE === "full" ? "full" : "none",
    maxChunkSize,
    uploadPartSize,
    pullThrough: parseRegistries(env, warnings),
    policy: parsePolicies(env, warnings),
    logR2Operations: /^(true|1|yes)$/i.test(String(env.LOG_R2_OPERATIONS ?? "").trim()),
    r2Limits: { enforce: limitsMode === "enforce", subrequests },
    gc: {
      mode: gcMode,
      graceMs: seconds("GC_GRACE_PERIOD", 3600),
      uploadMaxAgeMs: uploadMaxAge(seconds("GC_UPLOAD_MAX_AGE", 86400), warnings),
      maxOperations,
      maxMs: Math.max(1000, seconds("GC_MAX_SECONDS", 30)),
      intervalMs: seconds("GC_INTERVAL", 0),
    },
    notifications: parseNotifications(env, warnings),
    warnings,
  };
}

/** `GC_UPLOAD_MAX_AGE` (ms) lowered to {@link MAX_UPLOAD_AGE_SECONDS}, with a warning when it was longer. */
function uploadMaxAge(ms: number, warnings: string[]): number {
  if (ms <= MAX_UPLOAD_AGE_SECONDS * 1000) return ms;
  warnings.push(
    `GC_UPLOAD_MAX_AGE of ${ms / 1000} seconds is longer than the 7 days after which R2 aborts unfinished multipart uploads; using ${MAX_UPLOAD_AGE_SECONDS}`,
  );
  return MAX_UPLOAD_AGE_SECONDS * 1000;
}

/**
 * An origin as a browser sends it in `Origin` (scheme, host, port if not the default), from a
 * `CORS_ORIGINS` entry; undefined when the entry is not one (a path, a query, credentials).
 *
 * @example
 * originOf("https://UI.example:443/"); // "https://ui.example"
 */
export function originOf(entry: string): string | undefined {
  const trimmed = entry.replace(/\/+$/, "");
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return undefined;
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash || url.username || url.password) return undefined;
  if (url.origin !== "null") return url.origin;
  // Schemes without a URL origin (e.g. chrome-extension://<id>) are sent by browsers as written.
  return /^[a-z][a-z0-9+.-]*:\/\/[^/?#@\s]+$/i.test(trimmed) ? trimmed.toLowerCase() : undefined;
}

function parseCors(raw: unknown, warnings: string[]): CorsConfig {
  let anyOrigin = false;
  const origins = new Set<string>();
  for (const entry of String(raw ?? "").split(",").map((o) => o.trim())) {
    if (entry === "") continue;
    if (entry === "*") {
      anyOrigin = true;
      continue;
    }
    if (entry.toLowerCase() === "null") {
      warnings.push(
        'CORS_ORIGINS: ignoring "null": it is the origin of every sandboxed frame, local file and redirected request, so it cannot be trusted',
      );
      continue;
    }
    const origin = originOf(entry);
    if (origin) origins.add(origin);
    else warnings.push(`CORS_ORIGINS: ignoring ${JSON.stringify(entry)}: not an origin such as https://ui.example (scheme, host and port only)`);
  }
  return { anyOrigin, origins };
}

const cache = new WeakMap<object, Config>();

/**
 * {@link parseConfig}, memoised per environment object and logging its warnings once.
 *
 * @example
 * const config = configFor(env);
 */
export function configFor(env: Env): Config {
  let config = cache.get(env);
  if (!config) {
    config = parseConfig(env);
    for (const warning of config.warnings) console.warn(`r2-registry: ${warning}`);
    cache.set(env, config);
  }
  return config;
}
