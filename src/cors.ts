import type { Config } from "./config";

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
const METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOWED_HEADERS = "Authorization, Accept, Content-Type, Content-Range, Range, Content-Length";

/** The request's Origin when CORS allows it (`CORS_ORIGINS`), else undefined. */
export function allowedOrigin(request: Request, config: Config): string | undefined {
  if (config.corsOrigins.length === 0) return undefined;
  const origin = request.headers.get("Origin");
  if (!origin) return undefined;
  if (config.corsOrigins.includes("*") || config.corsOrigins.includes(origin)) return origin;
  return undefined;
}

/**
 * Answers a CORS preflight (`OPTIONS` with an allowed Origin) without credentials; `undefined`
 * when the request is not one.
 *
 * @example
 * const preflight = corsPreflight(request, config);
 * if (preflight) return preflight;
 */
export function corsPreflight(request: Request, config: Config): Response | undefined {
  if (request.method !== "OPTIONS") return undefined;
  const origin = allowedOrigin(request, config);
  if (!origin) return undefined;
  return new Response(null, {
    status: 204,
    headers: {
      "Access-Control-Allow-Origin": origin,
      "Access-Control-Allow-Methods": METHODS,
      "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers") ?? ALLOWED_HEADERS,
      "Access-Control-Allow-Credentials": "true",
      "Access-Control-Max-Age": "600",
      Vary: "Origin",
    },
  });
}

/** Adds the CORS answer headers to a response for an allowed Origin (mutates `headers`). */
export function addCorsHeaders(headers: Headers, request: Request, config: Config): void {
  const origin = allowedOrigin(request, config);
  if (!origin) return;
  headers.set("Access-Control-Allow-Origin", origin);
  headers.set("Access-Control-Allow-Credentials", "true");
  headers.set("Access-Control-Expose-Headers", EXPOSED);
  headers.append("Vary", "Origin");
}
