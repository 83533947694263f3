import { z } from "zod";
import type { Env } from "../env";
import { matchesRepository } from "../auth/jwt";
import type { Action } from "./event";

/** The body an endpoint receives: distribution's envelope, or CloudEvents 1.0. */
export type Format = "distribution" | "cloudevents";

/** One `NOTIFICATIONS_JSON` entry, validated, with its header values read from their secrets. */
export interface Endpoint {
  url: string;
  /** The URL as logs show it: no query (it may hold a token). */
  shown: string;
  /** Header values, read from the secrets `headers_env` names; never logged or queued. */
  headers: Record<string, string>;
  actions: ReadonlySet<Action>;
  /** Repository patterns (`*` matches anything, `/` included); undefined: every repository. */
  repositories: readonly string[] | undefined;
  format: Format;
  timeoutMs: number;
}

/** `NOTIFICATIONS_JSON` parsed. */
export interface NotificationsConfig {
  endpoints: Endpoint[];
}

/** Seconds an endpoint has to answer by default. */
export const DEFAULT_TIMEOUT_SECONDS = 5;
/** Longest `timeout` allowed: work after a response must end within 30 s. */
const MAX_TIMEOUT_SECONDS = 25;
const DEFAULT_ACTIONS: Action[] = ["push", "delete"];
/** Headers the registry sets itself. */
const RESERVED_HEADERS = new Set(["content-type", "content-length", "host"]);

const Entry = z.strictObject({
  url: z.string().trim().min(1),
  headers_env: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "a header name"), z.string().min(1)).optional(),
  actions: z.array(z.enum(["push", "pull", "delete"])).min(1).optional(),
  repositories: z.array(z.string().regex(/^[a-z0-9._/*-]+$/, "a repository name or pattern such as team/*")).min(1).optional(),
  format: z.enum(["distribution", "cloudevents"]).optional(),
  timeout: z.number().positive().max(MAX_TIMEOUT_SECONDS).optional(),
});

function problem(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const where = issue.path.length > 0 ? `"${issue.path.join(".")}": ` : "";
  return `${where}${issue.message}`;
}

/**
 * A URL as logs may show it: no credentials, no query, no fragment (they may hold tokens).
 *
 * @example
 * shownUrl("https://user:pw@hooks.example/in?token=x"); // "https://hooks.example/in"
 */
export function shownUrl(raw: string): string {
  try {
    const url = new URL(raw);
    return `${url.origin === "null" ? `${url.protocol}//${url.host}` : url.origin}${url.pathname}`;
  } catch {
    return raw.replace(/[?#].*$/, "").replace(/\/\/[^/@]*@/, "//");
  }
}

/** Validates one entry; returns the endpoint or why it is unusable. */
function parseEntry(raw: unknown, env: Env): Endpoint | string {
  const parsed = Entry.safeParse(raw);
  if (!parsed.success) return problem(parsed.error);
  const e = parsed.data;
  let url: URL;
  try {
    url = new URL(e.url);
  } catch {
    return `"url" ${JSON.stringify(e.url)} is not a URL`;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return `"url" must be http(s), got ${url.protocol}`;
  if (url.username || url.password) return `"url" must not hold credentials: put them in a secret named by "headers_env"`;
  const headers: Record<string, string> = {};
  for (const [header, secret] of Object.entries(e.headers_env ?? {})) {
    if (RESERVED_HEADERS.has(header.toLowerCase())) return `"headers_env": ${header} is set by the registry`;
    const value = env[secret];
    if (typeof value !== "string" || value === "") return `"headers_env" names ${JSON.stringify(secret)} for ${header}, which is not set (add it as a secret)`;
    headers[header] = value;
  }
  return {
    url: url.href,
    shown: shownUrl(url.href),
    headers,
    actions: new Set(e.actions ?? DEFAULT_ACTIONS),
    repositories: e.repositories,
    format: e.format ?? "distribution",
    timeoutMs: (e.timeout ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
  };
}

/**
 * Parses `NOTIFICATIONS_JSON`. Never throws: a bad entry is reported in `warnings` (one line
 * each, never a secret's value) and left out; the others still work.
 *
 * @example
 * parseNotifications({ NOTIFICATIONS_JSON: '[{"url":"https://hooks.example/registry"}]' }, []).endpoints[0]?.format;
 * // "distribution"
 */
export function parseNotifications(env: Env, warnings: string[]): NotificationsConfig {
  const endpoints: Endpoint[] = [];
  const raw = typeof env.NOTIFICATIONS_JSON === "string" ? env.NOTIFICATIONS_JSON.trim() : "";
  if (raw === "") return { endpoints };
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch (error) {
    warnings.push(`NOTIFICATIONS_JSON is not valid JSON (${(error as Error).message}); no notifications are sent`);
    return { endpoints };
  }
  if (!Array.isArray(list)) {
    warnings.push("NOTIFICATIONS_JSON must be a JSON array of {url, headers_env?, actions?, repositories?, format?, timeout?}; no notifications are sent");
    return { endpoints };
  }
  list.forEach((entry, index) => {
    const url = (entry as { url?: unknown } | null)?.url;
    const where = `NOTIFICATIONS_JSON[${index}]${typeof url === "string" ? ` (${shownUrl(url)})` : ""}`;
    const result = parseEntry(entry, env);
    if (typeof result === "string") warnings.push(`${where} ${result}; this endpoint is skipped`);
    else if (endpoints.some((e) => e.url === result.url && e.format === result.format)) {
      warnings.push(`${where} repeats an endpoint with the same url and format; combine them into one entry; this one is skipped`);
    } else endpoints.push(result);
  });
  return { endpoints };
}

/**
 * Whether an endpoint wants events of this action in this repository.
 *
 * @example
 * wants(endpoint, "pull", "team/app"); // false unless the entry lists "pull"
 */
export function wants(endpoint: Endpoint, action: Action, repository: string): boolean {
  return endpoint.actions.has(action) && (endpoint.repositories === undefined || matchesRepository(repository, endpoint.repositories));
}
