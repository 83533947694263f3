/**
 * The one table of error codes this registry answers with, and the error type handlers throw.
 *
 * Codes and statuses follow the OCI Distribution Spec v1.1 (and CNCF distribution where the spec
 * leaves a status open). Every error body has the spec's shape:
 * `{"errors":[{"code":"…","message":"…","detail":…}]}`.
 *
 * @example
 * throw new RegistryError("BLOB_UNKNOWN", `blob ${digest} is not in ${name}`);
 */
export const ERROR_CODES = {
  BLOB_UNKNOWN: { status: 404, message: "blob unknown to registry" },
  BLOB_UPLOAD_INVALID: { status: 400, message: "blob upload invalid" },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: "blob upload unknown to registry" },
  DIGEST_INVALID: { status: 400, message: "provided digest did not match uploaded content" },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: "manifest references a manifest or blob unknown to registry" },
  MANIFEST_INVALID: { status: 400, message: "manifest invalid" },
  MANIFEST_UNKNOWN: { status: 404, message: "manifest unknown to registry" },
  NAME_INVALID: { status: 400, message: "invalid repository name" },
  NAME_UNKNOWN: { status: 404, message: "repository name not known to registry" },
  SIZE_INVALID: { status: 400, message: "provided length did not match content length" },
  TAG_INVALID: { status: 400, message: "manifest tag did not match URI" },
  RANGE_INVALID: { status: 416, message: "invalid content range" },
  PAGINATION_NUMBER_INVALID: { status: 400, message: "invalid number of results requested" },
  UNAUTHORIZED: { status: 401, message: "authentication required" },
  DENIED: { status: 403, message: "requested access to the resource is denied" },
  UNSUPPORTED: { status: 405, message: "the operation is unsupported" },
  NOT_FOUND: { status: 404, message: "no such endpoint" },
  TOOMANYREQUESTS: { status: 429, message: "too many requests" },
  UNAVAILABLE: { status: 503, message: "service unavailable" },
  UNKNOWN: { status: 500, message: "unknown error" },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface RegistryErrorOptions {
  /** Overrides the table's status (e.g. 413 for an oversized manifest). */
  status?: number;
  /** The spec's free-form `detail` member. */
  detail?: unknown;
  /** Extra response headers (e.g. `Range` on a 416). */
  headers?: Record<string, string>;
}

/** An error a handler throws to answer the client with an OCI error body. */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, options: RegistryErrorOptions = {}) {
    super(message ?? ERROR_CODES[code].message);
    this.name = "RegistryError";
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.detail = options.detail ?? null;
    this.headers = options.headers ?? {};
  }
}

const encoder = new TextEncoder();

/**
 * Builds the JSON error response for a code.
 *
 * @example
 * return errorResponse(new RegistryError("NAME_UNKNOWN", "no repository named foo"));
 */
export function errorResponse(error: RegistryError, method = "GET"): Response {
  const body = JSON.stringify({
    errors: [{ code: error.code, message: error.message, detail: error.detail }],
  });
  const headers = new Headers(error.headers);
  headers.set("Content-Type", "application/json; charset=utf-8");
  // A HEAD answer carries no body, but says how long the GET body would be.
  headers.set("Content-Length", String(encoder.encode(body).byteLength));
  return new Response(method === "HEAD" ? null : body, { status: error.status, headers });
}
