import { RegistryError } from "./errors";
import type { PageRequest, RangeRequest } from "./registry/registry";

/**
 * Reads `n` and `last` of a listing request. `n` must be a non-negative integer (0 gives an
 * empty page); values above `max` are lowered to it.
 *
 * @example
 * const { n, last } = parsePage(url, { defaultN: 100, max: 1000 });
 */
export function parsePage(url: URL, { defaultN, max }: { defaultN: number; max: number }): PageRequest {
  const rawN = url.searchParams.getAll("n");
  const rawLast = url.searchParams.getAll("last");
  if (rawN.length > 1 || rawLast.length > 1) {
    throw new RegistryError("PAGINATION_NUMBER_INVALID", "n and last may each be given once");
  }
  let n = defaultN;
  if (rawN[0] !== undefined && rawN[0] !== "") {
    if (!/^\d{1,9}$/.test(rawN[0])) {
      throw new RegistryError("PAGINATION_NUMBER_INVALID", `n must be a non-negative integer, got ${JSON.stringify(rawN[0].slice(0, 50))}`);
    }
    n = Math.min(Number(rawN[0]), max);
  }
  const last = rawLast[0] ? rawLast[0] : undefined;
  return { n, last };
}

/**
 * The RFC 5988 `Link` header pointing at the next page (after `last`; from the start without it).
 *
 * @example
 * linkNext(url, 100, "v1.2"); // </v2/foo/tags/list?n=100&last=v1.2>; rel="next"
 */
export function linkNext(url: URL, n: number, last: string | undefined): string {
  const next = new URLSearchParams(url.searchParams);
  next.set("n", String(n));
  if (last === undefined) next.delete("last");
  else next.set("last", last);
  return `<${url.pathname}?${next.toString()}>; rel="next"`;
}

/** The request's Content-Length, if it sent a valid one. */
export function contentLength(request: Request): number | undefined {
  const raw = request.headers.get("Content-Length");
  if (raw === null) return undefined;
  if (!/^\d{1,16}$/.test(raw.trim())) throw new RegistryError("SIZE_INVALID", `invalid Content-Length ${JSON.stringify(raw.slice(0, 50))}`);
  return Number(raw);
}

/**
 * Parses a chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` prefix and `/total`
 * suffix tolerated). Throws RANGE_INVALID (416) for anything else.
 */
export function parseContentRange(header: string | null): { start: number; end: number } | undefined {
  if (header === null) return undefined;
  const m = /^\s*(?:bytes[ =])?\s*(\d{1,16})-(\d{1,16})\s*(?:\/\s*(?:\d+|\*))?\s*$/.exec(header);
  if (!m) throw new RegistryError("RANGE_INVALID", `invalid Content-Range ${JSON.stringify(header.slice(0, 100))}: use <start>-<end>`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryError("RANGE_INVALID", `Content-Range ${header} ends before it starts`);
  return { start, end };
}

/**
 * Parses a single-range `Range: bytes=…` header. Anything it does not understand (several
 * ranges, other units) is ignored and the whole body served, as RFC 9110 allows.
 */
export function parseRangeHeader(header: string | null): RangeRequest | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d{0,16})\s*-\s*(\d{0,16})\s*$/.exec(header);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") return { suffix: Number(m[2]) };
  const offset = Number(m[1]);
  if (m[2] === "") return { offset };
  const end = Number(m[2]);
  if (end < offset) return undefined;
  return { offset, length: end - offset + 1 };
}

/**
 * A query parameter decoded without turning `+` into a space: media types such as
 * `application/spdx+json` are often sent unencoded, and never contain spaces.
 *
 * @example
 * literalQueryParam(new URL("https://r/x?artifactType=application/spdx+json"), "artifactType"); // "application/spdx+json"
 */
export function literalQueryParam(url: URL, key: string): string | undefined {
  for (const pair of url.search.slice(1).split("&")) {
    const eq = pair.indexOf("=");
    const name = eq < 0 ? pair : pair.slice(0, eq);
    if (name !== key) continue;
    const raw = eq < 0 ? "" : pair.slice(eq + 1);
    try {
      return decodeURIComponent(raw);
    } catch {
      return raw;
    }
  }
  return undefined;
}

/**
 * Lets `edit` change a response's headers in place, which is all the Worker's own responses
 * need; only a response whose headers are immutable (one passed on from `fetch`) is copied
 * first, the way `new Response(body, response)` copies it.
 *
 * @example
 * return withHeaders(response, (headers) => headers.set("Docker-Distribution-API-Version", "registry/2.0"));
 */
export function withHeaders(response: Response, edit: (headers: Headers) => void): Response {
  try {
    edit(response.headers);
    return response;
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
  }
  const copy = new Response(response.body, response);
  edit(copy.headers);
  return copy;
}
