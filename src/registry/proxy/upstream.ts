import { MediaType } from "../../oci/media-types";
import { parseChallenges, type Challenge } from "./challenge";

/** One upstream registry, as validated from `REGISTRIES_JSON`. */
export interface UpstreamConfig {
  /** The entry's `registry` value as configured (for logs). */
  registry: string;
  /** Scheme, host and port requests go to (Docker Hub's aliases map to registry-1.docker.io). */
  origin: string;
  /** Repository path prefix from the URL's path (without `/v2`), e.g. `mirror/team`; "" for none. */
  prefix: string;
  /** Docker Hub: single-component names get `library/`. */
  dockerHub: boolean;
  username?: string;
  password?: string;
  /** Seconds after which a tag cached from this upstream is checked again (`tag_ttl`). */
  tagTtl?: number;
  /**
   * Local repository prefix (`namespace`): only names under `<namespace>/` go to this upstream,
   * without it (`dockerhub/library/alpine` is `library/alpine` there). Absent: names under no
   * namespace of another entry.
   */
  namespace?: string;
  /** Also fill repositories that hold manifests pushed here (`fill_local`). */
  fillLocal?: boolean;
}

/** Default bound on waiting for an upstream's response headers, in milliseconds. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 10_000;

/** Largest tag list page read from an upstream (a page of 1,000 long tags is ~130 KiB). */
export const MAX_TAG_LIST_SIZE = 4 * 1024 * 1024;
/** Largest token server answer read (tokens are a few KiB). */
export const MAX_TOKEN_RESPONSE_SIZE = 1024 * 1024;

/**
 * Manifest types asked for, most capable first; an upstream manifest answered with any other
 * `Content-Type` (`text/html` from a login page or a captive portal) is refused.
 */
export const MANIFEST_TYPES: readonly string[] = [
  MediaType.OCI_INDEX,
  MediaType.DOCKER_MANIFEST_LIST,
  MediaType.OCI_MANIFEST,
  MediaType.DOCKER_MANIFEST,
  MediaType.DOCKER_SCHEMA1_SIGNED,
  MediaType.DOCKER_SCHEMA1,
];

const MANIFEST_ACCEPT = MANIFEST_TYPES.join(", ");

const USER_AGENT = "r2-registry (pull-through)";
const MAX_REDIRECTS = 5;
/** Tokens whose lifetime is shorter than this are not worth caching (and clocks drift). */
const TOKEN_SLACK_MS = 10_000;
/** Docker's default token lifetime when the token server does not say (distribution spec). */
const DEFAULT_TOKEN_LIFETIME_S = 60;

interface CachedAuth {
  header: string;
  expiresAt: number;
}

/** Authorization values per upstream, user and scope, for this isolate's lifetime. */
const authCache = new Map<string, CachedAuth>();
/** Bound on cached tokens (one per repository pulled through); the oldest go first. */
const MAX_CACHED_TOKENS = 1000;

function remember(key: string, auth: CachedAuth): void {
  authCache.delete(key);
  authCache.set(key, auth);
  while (authCache.size > MAX_CACHED_TOKENS) {
    const oldest = authCache.keys().next().value;
    if (oldest === undefined) break;
    authCache.delete(oldest);
  }
}

/** Forgets every cached token (tests). */
export function clearUpstreamTokens(): void {
  authCache.clear();
}

/** An upstream's answer was not usable (an error, garbage, a body over its size limit). */
export class UpstreamError extends Error {}

/** An upstream did not answer, or send its body, within the timeout. */
export class UpstreamTimeout extends UpstreamError {}

/** An upstream answered an HTTP status other than 2xx and 404. */
export class UpstreamStatus extends UpstreamError {
  constructor(
    message: string,
    readonly status: number,
    /** Its `Retry-After` header, passed on with a 429. */
    readonly retryAfter?: string,
  ) {
    super(message);
  }
}

function basicHeader(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

/**
 * Races a promise against a timer; on timeout calls `onTimeout` (to abort the request or cancel
 * the body being read) and rejects with an {@link UpstreamTimeout}.
 */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: ((error: Error) => void) | undefined, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new UpstreamTimeout(`${what}: no answer within ${ms} ms`);
      onTimeout?.(error);
      reject(error);
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * A client of one upstream registry for pulls: anonymous, Basic, or the Bearer token flow with
 * tokens cached per scope until they expire. Redirects (blob downloads from a CDN) are followed
 * by hand, so credentials are only ever sent to the upstream's own origin and its token realm.
 *
 * @example
 * const hub = new Upstream({ registry: "https://index.docker.io/", origin: "https://registry-1.docker.io", prefix: "", dockerHub: true });
 * const response = await hub.manifest("alpine", "latest", "HEAD"); // HEAD …/v2/library/alpine/manifests/latest
 */
export class Upstream {
  constructor(
    readonly config: UpstreamConfig,
    private readonly timeoutMs: number = DEFAULT_UPSTREAM_TIMEOUT_MS,
  ) {}

  /** The repository path on the upstream for a local name (its namespace, if any, left out). */
  repository(name: string): string {
    const { prefix, dockerHub, namespace } = this.config;
    const remote = namespace && name.startsWith(`${namespace}/`) ? name.slice(namespace.length + 1) : name;
    if (prefix) return `${prefix}/${remote}`;
    return dockerHub && !remote.includes("/") ? `library/${remote}` : remote;
  }

  /** A manifest by tag or digest; `null` when the upstream does not have it. */
  manifest(name: string, reference: string, method: "GET" | "HEAD"): Promise<Response | null> {
    return this.pull(name, `manifests/${reference}`, method, { Accept: MANIFEST_ACCEPT });
  }

  /** A blob, or the part a `Range` header value asks for; `null` when the upstream does not have it. */
  blob(name: string, digest: string, method: "GET" | "HEAD", range?: string): Promise<Response | null> {
    return this.pull(name, `blobs/${digest}`, method, range ? { Range: range } : {});
  }

  /** A page of the repository's tags; `null` when the upstream does not know it. */
  async tags(name: string, n: number, last?: string): Promise<{ tags: string[]; more: boolean } | null> {
    const query = new URLSearchParams({ n: String(n) });
    if (last !== undefined) query.set("last", last);
    const response = await this.pull(name, `tags/list?${query}`, "GET", { Accept: "application/json" });
    if (!response) return null;
    const body = (await this.readJson(response, MAX_TAG_LIST_SIZE, "the tag list")) as { tags?: unknown } | null;
    const tags = body?.tags ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === "string")) throw new UpstreamError("tags list is not a list of strings");
    return { tags: tags as string[], more: /rel="?next"?/i.test(response.headers.get("Link") ?? "") };
  }

  /**
   * Reads a JSON body of at most `limit` bytes within the timeout; a larger one is refused
   * without being read further.
   */
  async readJson(response: Response, limit: number, what: string): Promise<unknown> {
    const bytes = await this.readBytes(response, limit, what);
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    } catch (error) {
      throw new UpstreamError(`${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * Reads a body of at most `limit` bytes within the timeout. A larger one (by its
   * `Content-Length`, or once more than `limit` bytes arrived) is cancelled and refused with an
   * {@link UpstreamError}: never more than `limit` bytes (and one chunk) are held.
   */
  async readBytes(response: Response, limit: number, what: string): Promise<Uint8Array> {
    const tooLarge = () => new UpstreamError(`${what} is larger than ${limit} bytes; refused`);
    const declared = Number(response.headers.get("Content-Length") ?? NaN);
    if (declared > limit) {
      await response.body?.cancel().catch(() => {});
      throw tooLarge();
    }
    const reader = response.body?.getReader();
    if (!reader) return new Uint8Array(0);
    const read = async () => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > limit) {
          await reader.cancel().catch(() => {});
          throw tooLarge();
        }
        chunks.push(value);
      }
      const out = new Uint8Array(size);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.byteLength;
      }
      return out;
    };
    return withTimeout(read(), this.timeoutMs, (error) => void reader.cancel(error).catch(() => {}), `reading ${what}`);
  }

  /**
   * GET/HEAD `/v2/<repository>/<path>` with authentication; `null` on 404, the response when
   * 2xx, an UpstreamError otherwise.
   */
  private async pull(name: string, path: string, method: "GET" | "HEAD", headers: Record<string, string>): Promise<Response | null> {
    const repository = this.repository(name);
    const url = `${this.config.origin}/v2/${repository}/${path}`;
    const scope = `repository:${repository}:pull`;
    const response = await this.send(url, method, headers, scope);
    // A public registry answers a name it does not have with 401 or 403 even to a fresh anonymous
    // token (Docker Hub: 401 UNAUTHORIZED): for an entry without credentials that is "not here",
    // and the next upstream may answer. With credentials it is an error (a private upstream that
    // refuses is never passed over for a public one).
    const missing = response.status === 404 || ((response.status === 401 || response.status === 403) && this.config.username === undefined);
    if (missing) {
      await response.body?.cancel().catch(() => {});
      return null;
    }
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      const retryAfter = response.headers.get("Retry-After") ?? undefined;
      throw new UpstreamStatus(`${method} ${url}: HTTP ${response.status}`, response.status, retryAfter);
    }
    return response;
  }

  private cacheKey(scope: string): string {
    return `${this.config.origin}\n${this.config.username ?? ""}\n${scope}`;
  }

  private async send(url: string, method: string, headers: Record<string, string>, scope: string): Promise<Response> {
    const key = this.cacheKey(scope);
    const cached = authCache.get(key);
    let authorization: string | undefined;
    if (cached && cached.expiresAt > Date.now()) authorization = cached.header;
    else if (cached) authCache.delete(key);
    const response = await this.fetchFollowing(url, method, headers, authorization, this.config.origin);
    if (response.status !== 401) return response;
    authCache.delete(key);
    const challenges = parseChallenges(response.headers.get("WWW-Authenticate"));
    await response.body?.cancel().catch(() => {});
    const fresh = await this.authorize(challenges, scope);
    if (!fresh) throw new UpstreamError(`${method} ${url}: HTTP 401 and no usable challenge`);
    remember(key, fresh);
    return this.fetchFollowing(url, method, headers, fresh.header, this.config.origin);
  }

  /** Answers a 401's challenges: a Bearer token from the realm, or Basic credentials. */
  private async authorize(challenges: Challenge[], scope: string): Promise<CachedAuth | undefined> {
    const { username, password } = this.config;
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    if (bearer) return this.fetchToken(bearer.params.realm!, bearer.params.service, scope);
    if (challenges.some((c) => c.scheme === "basic") && username !== undefined) {
      return { header: basicHeader(username, password ?? ""), expiresAt: Number.POSITIVE_INFINITY };
    }
    return undefined;
  }

  private async fetchToken(realm: string, service: string | undefined, scope: string): Promise<CachedAuth> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new UpstreamError(`token realm ${JSON.stringify(realm)} is not a URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new UpstreamError(`token realm ${realm} is not http(s)`);
    if (service !== undefined) url.searchParams.set("service", service);
    url.searchParams.set("scope", scope);
    const { username, password } = this.config;
    const authorization = username !== undefined ? basicHeader(username, password ?? "") : undefined;
    const response = await this.fetchFollowing(url.toString(), "GET", { Accept: "application/json" }, authorization, url.origin);
    if (!response.ok) {
      await response.body?.cancel().catch(() => {});
      throw new UpstreamError(`token request to ${url.origin}${url.pathname}: HTTP ${response.status}`);
    }
    const body = (await this.readJson(response, MAX_TOKEN_RESPONSE_SIZE, `the token answer from ${url.origin}`)) as {
      token?: unknown;
      access_token?: unknown;
      expires_in?: unknown;
    } | null;
    const token = typeof body?.access_token === "string" && body.access_token ? body.access_token : body?.token;
    if (typeof token !== "string" || token.length === 0) throw new UpstreamError(`token response from ${url.origin} has no token`);
    const lifetime = typeof body?.expires_in === "number" && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_LIFETIME_S;
    return { header: `Bearer ${token}`, expiresAt: Date.now() + lifetime * 1000 - TOKEN_SLACK_MS };
  }

  /**
   * fetch with manual redirects: `authorization` goes only to `authOrigin`, never to a CDN a
   * redirect points at. Each hop must answer (headers) within the timeout.
   */
  private async fetchFollowing(
    url: string,
    method: string,
    headers: Record<string, string>,
    authorization: string | undefined,
    authOrigin: string,
  ): Promise<Response> {
    let current = new URL(url);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const h = new Headers(headers);
      h.set("User-Agent", USER_AGENT);
      if (authorization && current.origin === authOrigin) h.set("Authorization", authorization);
      const controller = new AbortController();
      const response = await withTimeout(
        fetch(current.toString(), { method, headers: h, redirect: "manual", signal: controller.signal }),
        this.timeoutMs,
        (error) => controller.abort(error),
        `${method} ${current.origin}${current.pathname}`,
      );
      const location = response.headers.get("Location");
      if (![301, 302, 303, 307, 308].includes(response.status) || !location) return response;
      await response.body?.cancel().catch(() => {});
      current = new URL(location, current);
      if (current.protocol !== "https:" && current.protocol !== "http:") throw new UpstreamError(`redirect to ${current.protocol}`);
    }
    throw new UpstreamError(`more than ${MAX_REDIRECTS} redirects from ${url}`);
  }
}
