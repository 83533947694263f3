import { z } from "zod";
import type { Env } from "./env";
import { parseRegistries, type PullThroughConfig } from "./registry/proxy/config";

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
  /** `ANONYMOUS_PULL=true`: pulls need no credentials (pushes and deletes still do). */
  anonymousPull: boolean;
  /** `CORS_ORIGINS`: browser origins allowed to call the registry (`*` for any); empty: no CORS. */
  corsOrigins: string[];
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
  /** `LOG_R2_OPERATIONS=true`: log how many R2 operations of each pricing class each request made. */
  logR2Operations: boolean;
  /** Problems found while parsing, logged once. */
  warnings: string[];
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

/** Default of `GC_MAX_OPERATIONS`: Workers Paid's 10,000 subrequests per invocation, with headroom. */
export const DEFAULT_GC_MAX_OPERATIONS = 8000;
/** The fewest R2 calls a collection can make progress with (`GC_MAX_OPERATIONS` is raised to it). */
export const MIN_GC_OPERATIONS = 20;

/** Workers' request body limit on most plans: 100 MB. */
export const DEFAULT_MAX_CHUNK_SIZE = 100_000_000;

const positiveInt = z.coerce.number().int().positive();
/** R2's bounds on a multipart part. */
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;

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
    const parsed = positiveInt.min(MIN_PART_SIZE).max(MAX_PART_SIZE).safeParse(env.UPLOAD_PART_SIZE);
    if (parsed.success) uploadPartSize = parsed.data;
    else warnings.push(`UPLOAD_PART_SIZE must be a whole number of bytes from ${MIN_PART_SIZE} to ${MAX_PART_SIZE}; using the default`);
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

  return {
    credentials,
    jwtPublicKey: nonEmpty(env.JWT_REGISTRY_TOKENS_PUBLIC_KEY),
    anonymousPull: /^(true|1|yes)$/i.test(String(env.ANONYMOUS_PULL ?? "").trim()),
    corsOrigins: String(env.CORS_ORIGINS ?? "")
      .split(",")
      .map((o) => o.trim().replace(/\/+$/, ""))
      .filter((o) => o.length > 0),
    pushCompatibilityMode: env.PUSH_COMPATIBILITY_MODE === "full" ? "full" : "none",
    maxChunkSize,
    uploadPartSize,
    pullThrough: parseRegistries(env, warnings),
    logR2Operations: /^(true|1|yes)$/i.test(String(env.LOG_R2_OPERATIONS ?? "").trim()),
    gc: {
      mode: gcMode,
      graceMs: seconds("GC_GRACE_PERIOD", 3600),
      uploadMaxAgeMs: seconds("GC_UPLOAD_MAX_AGE", 86400),
      maxOperations,
      maxMs: Math.max(1000, seconds("GC_MAX_SECONDS", 30)),
      intervalMs: seconds("GC_INTERVAL", 0),
    },
    warnings,
  };
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
