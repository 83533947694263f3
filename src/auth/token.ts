import { z } from "zod";
import type { Capability, Config } from "../config";
import { isName } from "../oci/names";

/**
 * The registry's own tokens, handed out by `/token` (the Docker token flow, with public pulls):
 *
 *     r2t.v1.<base64url(JSON payload)>.<base64url(HMAC-SHA-256(key, "r2t.v1." + payload))>
 *
 * The payload says only when the token was issued, when it expires and what it grants
 * (`{"iat":…,"exp":…,"access":[{"type":"repository","name":"a","actions":["pull"]}]}`, Docker's
 * claim shape): no user name, no password, nothing derived from them. The key comes from
 * `TOKEN_SECRET` and the configured credentials (see {@link tokenKey}), so a token cannot be
 * made or altered without them, and changing a password or the secret voids every token issued.
 */
export const TOKEN_PREFIX = "r2t.v1.";
/** How long a token lasts, in seconds (what `/token` announces as `expires_in`). */
export const TOKEN_TTL = 3600;
/** Scopes read from one token request; more are ignored (a client asks for one or a few). */
const MAX_SCOPES = 32;
/** Fixed label the key is derived under. */
const LABEL = "r2-registry token key v1";
/**
 * PBKDF2 rounds when the key comes from the credentials alone. A leaked token lets whoever holds
 * it test password guesses offline; each guess then costs this many HMACs instead of one. The
 * derivation runs once per isolate and configuration, about 5 ms of CPU (workerd allows 100,000
 * rounds at most; 50,000 keeps the first token request within the Free plan's 10 ms).
 */
const PBKDF2_ITERATIONS = 50_000;

/** What a registry token grants: actions per repository name, and the catalog. */
export interface TokenGrant {
  repositories: ReadonlyMap<string, ReadonlySet<Capability>>;
  catalog: boolean;
}

/** A verified token's grant and expiry (ms since the epoch). */
export interface RegistryTokenClaims {
  grant: TokenGrant;
  expiresAt: number;
}

const encoder = new TextEncoder();

function b64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Parses the `scope` parameters of a token request (Docker's `repository:<name>:pull,push`, and
 * `registry:catalog:*`; several per parameter when separated by spaces). `delete` counts as push,
 * `*` as pull and push; unknown types, bad names and unknown actions are left out.
 *
 * @example
 * parseScopes(["repository:team/app:pull,push", "registry:catalog:*"]);
 * // { repositories: Map { "team/app" => Set { "pull", "push" } }, catalog: true }
 */
export function parseScopes(values: readonly string[]): TokenGrant {
  const repositories = new Map<string, Set<Capability>>();
  let catalog = false;
  const items = values.flatMap((value) => value.split(/\s+/)).filter((item) => item.length > 0);
  for (const item of items.slice(0, MAX_SCOPES)) {
    const first = item.indexOf(":");
    const last = item.lastIndexOf(":");
    if (first < 0 || last === first) continue;
    const type = item.slice(0, first).replace(/\(.*\)$/, "");
    const name = item.slice(first + 1, last);
    const actions = item.slice(last + 1).split(",");
    if (type === "registry" && name === "catalog" && actions.includes("*")) catalog = true;
    if (type !== "repository" || !isName(name)) continue;
    const wanted = repositories.get(name) ?? new Set<Capability>();
    for (const action of actions) {
      if (action === "pull" || action === "*") wanted.add("pull");
      if (action === "push" || action === "delete" || action === "*") wanted.add("push");
    }
    if (wanted.size > 0) repositories.set(name, wanted);
  }
  return { repositories, catalog };
}

const keyCache = new WeakMap<Config, Promise<CryptoKey | undefined>>();

/**
 * The HMAC-SHA-256 key registry tokens are signed with, derived once per configuration:
 * HKDF over `TOKEN_SECRET` and the credentials when the secret is set, else PBKDF2 over the
 * credentials; `undefined` when there is neither (no token can then be issued or verified).
 * Either way a new password or secret gives a new key, which voids the tokens signed before.
 *
 * @example
 * const key = await tokenKey(config);
 */
export function tokenKey(config: Config): Promise<CryptoKey | undefined> {
  let key = keyCache.get(config);
  if (!key) {
    key = deriveKey(config);
    keyCache.set(config, key);
  }
  return key;
}

async function deriveKey(config: Config): Promise<CryptoKey | undefined> {
  const credentials = config.credentials.map((c) => [c.username, c.password]);
  const hmac = { name: "HMAC", hash: "SHA-256", length: 256 };
  const salt = encoder.encode(LABEL);
  if (config.tokenSecret !== undefined) {
    const material = encoder.encode(JSON.stringify([config.tokenSecret, credentials]));
    const base = await crypto.subtle.importKey("raw", material, "HKDF", false, ["deriveKey"]);
    return crypto.subtle.deriveKey({ name: "HKDF", hash: "SHA-256", salt, info: encoder.encode("hmac") }, base, hmac, false, ["sign"]);
  }
  if (credentials.length === 0) return undefined;
  const base = await crypto.subtle.importKey("raw", encoder.encode(JSON.stringify(credentials)), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey({ name: "PBKDF2", hash: "SHA-256", salt, iterations: PBKDF2_ITERATIONS }, base, hmac, false, ["sign"]);
}

/**
 * Signs a token granting `grant` from `issuedAt` to `expiresAt` (seconds since the epoch).
 *
 * @example
 * const token = await signRegistryToken(key, parseScopes(["repository:a:pull"]), now, now + TOKEN_TTL);
 */
export async function signRegistryToken(key: CryptoKey, grant: TokenGrant, issuedAt: number, expiresAt: number): Promise<string> {
  const access: { type: string; name: string; actions: string[] }[] = [];
  for (const [name, actions] of grant.repositories) access.push({ type: "repository", name, actions: [...actions].sort() });
  if (grant.catalog) access.push({ type: "registry", name: "catalog", actions: ["*"] });
  const payload = b64url(encoder.encode(JSON.stringify({ iat: issuedAt, exp: expiresAt, access })));
  const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(TOKEN_PREFIX + payload));
  return `${TOKEN_PREFIX}${payload}.${b64url(new Uint8Array(signature))}`;
}

const Payload = z.object({
  iat: z.number(),
  exp: z.number(),
  access: z.array(z.object({ type: z.string(), name: z.string(), actions: z.array(z.string()) })),
});

/**
 * True for a string shaped like a registry token (it may still not verify).
 *
 * @example
 * isRegistryToken("r2t.v1.eyJpYXQiOjF9.c2ln"); // true
 */
export function isRegistryToken(token: string): boolean {
  return token.startsWith(TOKEN_PREFIX);
}

/**
 * Verifies a registry token: its signature (compared in constant time), then its expiry.
 * Returns its claims, or why it is refused.
 *
 * @example
 * const result = await verifyRegistryToken(token, key);
 * if ("claims" in result) result.claims.grant.repositories.get("a"); // Set { "pull" }
 */
export async function verifyRegistryToken(
  token: string,
  key: CryptoKey,
  now = Date.now(),
): Promise<{ claims: RegistryTokenClaims } | { refused: "invalid" | "expired" }> {
  if (!isRegistryToken(token)) return { refused: "invalid" };
  const parts = token.slice(TOKEN_PREFIX.length).split(".");
  if (parts.length !== 2) return { refused: "invalid" };
  const [payload, signature] = parts as [string, string];
  const given = fromB64url(signature);
  if (!given || given.byteLength !== 32 || !/^[A-Za-z0-9_-]+$/.test(payload)) return { refused: "invalid" };
  const expected = await crypto.subtle.sign("HMAC", key, encoder.encode(TOKEN_PREFIX + payload));
  if (!crypto.subtle.timingSafeEqual(expected, given)) return { refused: "invalid" };
  let parsed: z.infer<typeof Payload>;
  try {
    parsed = Payload.parse(JSON.parse(new TextDecoder().decode(fromB64url(payload))));
  } catch {
    return { refused: "invalid" };
  }
  const expiresAt = parsed.exp * 1000;
  if (now >= expiresAt) return { refused: "expired" };
  const repositories = new Map<string, Set<Capability>>();
  let catalog = false;
  for (const { type, name, actions } of parsed.access) {
    if (type === "registry" && name === "catalog") catalog = true;
    if (type !== "repository") continue;
    const granted = new Set(actions.filter((a): a is Capability => a === "pull" || a === "push"));
    if (granted.size > 0) repositories.set(name, granted);
  }
  return { claims: { grant: { repositories, catalog }, expiresAt } };
}
