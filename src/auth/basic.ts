/** Username and password from a Basic `Authorization` header. */
export interface BasicCredentials {
  username: string;
  password: string;
}

/**
 * Parses `Authorization: Basic <base64(user:pass)>` (RFC 7617; standard base64, URL-safe
 * letters tolerated). Returns `undefined` for anything else.
 *
 * @example
 * parseBasic("Basic aGVsbG86d29ybGQ="); // { username: "hello", password: "world" }
 */
export function parseBasic(header: string | null): BasicCredentials | undefined {
  const m = header ? /^\s*basic\s+([A-Za-z0-9+/_=-]+)\s*$/i.exec(header) : null;
  if (!m) return undefined;
  let binary: string;
  try {
    binary = atob(m[1]!.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return undefined;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

const encoder = new TextEncoder();

/**
 * Compares two strings in time that does not depend on where they differ or on their lengths
 * (both are hashed first, then compared with `timingSafeEqual`).
 *
 * @example
 * await constantTimeEqual(given, expected);
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [ha, hb] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  return crypto.subtle.timingSafeEqual(ha, hb);
}
