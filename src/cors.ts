import type { Config } from "./config";
import { RegistryError } from "./errors";

/**
 * CORS for browser registry UIs (`CORS_ORIGINS`), and the refusal of cross-site requests that
 * would change the registry.
 *
 * - An origin listed by name may use the browser's saved login: its answers echo it in
 *   `Access-Control-Allow-Origin`, with `Access-Control-Allow-Credentials: true` and
 *   `Vary: Origin`, and it may push and delete.
 * - `*` answers every other origin with a literal `Access-Control-Allow-Origin: *` and no
 *   `Access-Control-Allow-Credentials`, so browsers never attach their saved login: a page may
 *   read with credentials it sends itself (an `Authorization` header), and change nothing.
 * - A POST, PUT, PATCH or DELETE from a browser page (it sends `Origin`, or
 *   `Sec-Fetch-Site: cross-site`) of an origin that is neither listed by name nor the registry's
 *   own is refused with 403 DENIED before anything is read or written: an HTML form on any site
 *   could otherwise post to the registry with the browser's saved Basic login. Registry clients
 *   (docker, podman, skopeo, curl) send no `Origin` and are not affected.
 */

/** Headers browser registry UIs need to read from responses. */
const EXPOSED = [
  "Docker-Content-Digest",
  "Docker-Distribution-API-Version",
  "Docker-Upload-UUID",
  "Link",
  "Location",
  "Range",
  "Content-Range",
  "WWW-Authenticate",
  "OCI-Subject",
  "OCI-Filters-Applied",
  "OCI-Chunk-Min-Length",
  "OCI-Chunk-Max-Length",
].join(", ");

/** Request headers registry clients and UIs send; a preflight is answered with these, never with what it asks for. */
export const ALLOWED_HEADERS = ["Authorization", "Accept", "Content-Type", "Content-Range", "Range", "Docker-Content-Digest"].join(", ");

/** Methods an origin listed by name may use. */
const ALL_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE";
/** Methods any origin may use under `*`. */
const READ_METHODS = "GET, HEAD";
/** How long a browser may keep a preflight's answer (seconds). */
const MAX_AGE = "600";

/** Methods that change the registry. */
const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * What CORS grants the request's `Origin`: `credentials` (listed by name: echoed, with the
 * browser's saved login), `any` (`*`: a literal `*`, no saved login), or nothing.
 */
type Grant = { kind: "credentials"; origin: string } | { kind: "any" } | undefined;

function grantFor(request: Request, config: Config): Grant {
  const origin = request.headers.get("Origin");
  if (origin === null) return undefined;
  if (config.cors.origins.has(origin)) return { kind: "credentials", origin };
  if (config.cors.anyOrigin) return { kind: "any" };
  return undefined;
}

function corsEnabled(config: Config): boolean {
  return config.cors.anyOrigin || config.cors.origins.size > 0;
}

/** An origin for a message, shortened (it is whatever the caller sent). */
function shown(origin: string): string {
  return JSON.stringify(origin.slice(0, 100));
}

/**
 * Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`);
 * `undefined` when the request is not one. An origin listed by name gets every method and
 * credentials; under `*` any other origin gets `GET` and `HEAD` without credentials; any other
 * origin gets 403 DENIED (a thrown `RegistryError`) and no `Access-Control-Allow-*` header.
 * The allowed request headers are always {@link ALLOWED_HEADERS}.
 *
 * @example
 * const preflight = corsPreflight(request, config);
 * if (preflight) return preflight;
 */
export function corsPreflight(request: Request, config: Config): Response | undefined {
  if (request.method !== "OPTIONS") return undefined;
  const origin = request.headers.get("Origin");
  if (origin === null || !request.headers.has("Access-Control-Request-Method")) return undefined;
  const grant = grantFor(request, config);
  if (!grant) {
    const why = corsEnabled(config) ? "it is not listed in CORS_ORIGINS" : "CORS_ORIGINS is not set, so no browser page of another origin may call this registry";
    throw new RegistryError("DENIED", `cross-origin requests from ${shown(origin)} are not allowed: ${why}`, { detail: { origin } });
  }
  const headers = new Headers({
    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
    "Access-Control-Max-Age": MAX_AGE,
    Vary: "Origin",
  });
  if (grant.kind === "credentials") {
    headers.set("Access-Control-Allow-Origin", grant.origin);
    headers.set("Access-Control-Allow-Credentials", "true");
    headers.set("Access-Control-Allow-Methods", ALL_METHODS);
  } else {
    headers.set("Access-Control-Allow-Origin", "*");
    headers.set("Access-Control-Allow-Methods", READ_METHODS);
  }
  return new Response(null, { status: 204, headers });
}

/**
 * Adds the CORS answer headers to a response (mutates `headers`): for an origin listed by name,
 * the origin with `Access-Control-Allow-Credentials: true`; under `*`, a literal `*`; and
 * `Vary: Origin` whenever CORS is configured, since the answer depends on it.
 *
 * @example
 * addCorsHeaders(response.headers, request, config);
 */
export function addCorsHeaders(headers: Headers, request: Request, config: Config): void {
  if (!corsEnabled(config)) return;
  headers.append("Vary", "Origin");
  const grant = grantFor(request, config);
  if (!grant) return;
  if (grant.kind === "credentials") {
    headers.set("Access-Control-Allow-Origin", grant.origin);
    headers.set("Access-Control-Allow-Credentials", "true");
  } else {
    headers.set("Access-Control-Allow-Origin", "*");
    headers.delete("Access-Control-Allow-Credentials");
  }
  headers.set("Access-Control-Expose-Headers", EXPOSED);
}

/**
 * Refuses, with 403 DENIED, a POST, PUT, PATCH or DELETE sent by a browser page that may not
 * change the registry: one whose `Origin` is neither the registry's own (`url.origin`) nor listed
 * by name in `CORS_ORIGINS` (`*` does not count; `Origin: null`, the origin of sandboxed frames,
 * local files and redirects, never does), or one without `Origin` whose `Sec-Fetch-Site` says
 * another site sent it. Requests without either header (registry clients) pass.
 *
 * Reads with side effects (a pull-through pull caches what it fetches) are refused the same way
 * when another site embeds them (`<img src>`, `<script src>`: `Sec-Fetch-Site: cross-site` with
 * `Sec-Fetch-Mode: no-cors`), which a browser may send with its saved login.
 *
 * @example
 * refuseCrossSite(request, url, config); // throws for a form on https://evil.example posting to /v2/_gc
 */
export function refuseCrossSite(request: Request, url: URL, config: Config): void {
  if (!STATE_CHANGING.has(request.method)) {
    const embedded = request.headers.get("Sec-Fetch-Site") === "cross-site" && request.headers.get("Sec-Fetch-Mode") === "no-cors";
    if (embedded && url.pathname !== "/") {
      throw new RegistryError("DENIED", `${request.method} embedded in a page of another site (Sec-Fetch-Mode: no-cors) is refused`, {
        detail: { site: "cross-site" },
      });
    }
    return;
  }
  const origin = request.headers.get("Origin");
  const action = `${request.method} from a browser page`;
  if (origin === null) {
    const site = request.headers.get("Sec-Fetch-Site");
    if (site === null || site === "same-origin" || site === "none") return;
    throw new RegistryError(
      "DENIED",
      `${action} of another site (Sec-Fetch-Site: ${shown(site)}) is refused: it names no Origin, so it cannot be one listed in CORS_ORIGINS`,
      { detail: { site } },
    );
  }
  if (origin === url.origin || config.cors.origins.has(origin)) return;
  let why: string;
  if (origin === "null") {
    why = "pages without an origin (sandboxed frames, local files, redirects) may never change the registry";
  } else if (config.cors.anyOrigin) {
    why = "CORS_ORIGINS=* lets any page read; a page that pushes or deletes needs its origin listed by name in CORS_ORIGINS";
  } else {
    why = "its origin is not listed in CORS_ORIGINS";
  }
  throw new RegistryError("DENIED", `${action} on ${shown(origin)} is refused: ${why} (registry clients send no Origin)`, {
    detail: { origin },
  });
}
