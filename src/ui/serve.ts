import { RegistryError } from "../errors";
import { UI_FILES } from "./assets";

/**
 * The web UI: static files bundled into the Worker (`assets.ts`, built from `client/` by
 * `pnpm build:ui`), served under `/ui/` without credentials (the page signs in itself, against
 * `/v2/`). Every answer carries a strict Content-Security-Policy: scripts, styles and requests of
 * this origin only, no inline script or style, no framing, and Trusted Types, so the page cannot
 * build markup from strings.
 */

/** Where the UI lives. */
export const UI_PATH = "/ui/";

/** The Content-Security-Policy of the UI's answers. */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

/** True for `/ui` and everything under `/ui/`. */
export function isUiPath(pathname: string): boolean {
  return pathname === "/ui" || pathname.startsWith(UI_PATH);
}

/**
 * Answers a request for the UI: `/ui` redirects to `/ui/`, `/ui/` is the page, `/ui/<file>` its
 * scripts, stylesheet and icon. `GET` and `HEAD` only; an unchanged file (`If-None-Match`) is 304.
 *
 * @example
 * if (isUiPath(url.pathname)) return serveUi(request, url);
 */
export function serveUi(request: Request, url: URL): Response {
  if (request.method !== "GET" && request.method !== "HEAD") {
    throw new RegistryError("UNSUPPORTED", `${request.method} is not supported here; use GET, HEAD`, { headers: { Allow: "GET, HEAD" } });
  }
  if (url.pathname === "/ui") return new Response(null, { status: 301, headers: { Location: `${UI_PATH}${url.search}` } });
  const name = url.pathname.slice(UI_PATH.length) || "index.html";
  const file = Object.hasOwn(UI_FILES, name) ? UI_FILES[name] : undefined;
  if (!file) throw new RegistryError("NOT_FOUND", `no such file of the web UI: ${url.pathname.slice(0, 200)}`);
  const headers = new Headers({
    "Content-Type": file.type,
    ETag: file.etag,
    // Revalidated on each load (a deploy changes the files), with a 304 when unchanged.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": UI_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
  });
  const known = request.headers.get("If-None-Match");
  if (known !== null && known.split(",").some((tag) => tag.trim().replace(/^W\//, "") === file.etag)) {
    return new Response(null, { status: 304, headers });
  }
  return new Response(request.method === "HEAD" ? null : file.body, { status: 200, headers });
}
