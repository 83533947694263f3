import { decodeJwt } from "@cfworker/jwt";

/** A public key tokens may be signed with, and the one algorithm it verifies. */
export interface VerificationKey {
  kid?: string;
  alg: TokenAlgorithm;
  key: CryptoKey;
}

export type TokenAlgorithm = "ES256" | "ES384" | "ES512" | "RS256" | "RS384" | "RS512";

/** What a verified token grants. */
export interface TokenClaims {
  subject: string;
  capabilities: string[];
  /** Repository name patterns the token is limited to (`*` matches anything); all when absent. */
  repositories?: string[];
  /** When the token stops verifying (its `exp` plus the tolerated skew), in ms since the epoch; never when absent. */
  expiresAt?: number;
}

const EC: Record<string, { alg: TokenAlgorithm; hash: string }> = {
  "P-256": { alg: "ES256", hash: "SHA-256" },
  "P-384": { alg: "ES384", hash: "SHA-384" },
  "P-521": { alg: "ES512", hash: "SHA-512" },
};
const ES_HASH: Record<string, string> = { ES256: "SHA-256", ES384: "SHA-384", ES512: "SHA-512" };
const RSA: Record<string, string> = { RS256: "SHA-256", RS384: "SHA-384", RS512: "SHA-512" };
/** Clock skew tolerated on `exp` and `nbf`, in seconds. */
const LEEWAY = 30;

function base64Bytes(text: string): Uint8Array {
  const normal = text.trim().replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(normal + "=".repeat((4 - (normal.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/**
 * Imports `JWT_REGISTRY_TOKENS_PUBLIC_KEY`: base64 of a JSON Web Key (EC P-256/384/521 or RSA),
 * or of a JWK Set `{"keys":[…]}` whose keys are chosen by `kid`. Throws an Error that says what
 * is wrong with the setting.
 *
 * @example
 * const keys = await importVerificationKeys(btoa(JSON.stringify(publicJwk)));
 */
export async function importVerificationKeys(setting: string): Promise<VerificationKey[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(base64Bytes(setting)));
  } catch {
    throw new Error("JWT_REGISTRY_TOKENS_PUBLIC_KEY must be the base64 of a JSON Web Key (or JWK Set)");
  }
  const list = (parsed as { keys?: unknown })?.keys;
  const jwks = Array.isArray(list) ? list : [parsed];
  const keys: VerificationKey[] = [];
  for (const [i, raw] of jwks.entries()) {
    if (typeof raw !== "object" || raw === null) throw new Error(`JWT_REGISTRY_TOKENS_PUBLIC_KEY: key ${i} is not a JSON object`);
    // Only the public members: a private key pasted by mistake still verifies, and key_ops of
    // the signing side do not get in the way.
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, key_ops: _ops, ...jwk } = raw as JsonWebKey & { kid?: string };
    const kid = typeof jwk.kid === "string" ? jwk.kid : undefined;
    try {
      if (jwk.kty === "EC" && jwk.crv && EC[jwk.crv]) {
        const { alg } = EC[jwk.crv]!;
        const key = await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: jwk.crv }, false, ["verify"]);
        keys.push({ kid, alg, key });
      } else if (jwk.kty === "RSA") {
        const algs = jwk.alg && RSA[jwk.alg] ? [jwk.alg] : Object.keys(RSA);
        for (const alg of algs) {
          const { alg: _alg, ...plain } = jwk;
          const key = await crypto.subtle.importKey("jwk", plain, { name: "RSASSA-PKCS1-v1_5", hash: RSA[alg]! }, false, ["verify"]);
          keys.push({ kid, alg: alg as TokenAlgorithm, key });
        }
      } else {
        throw new Error(`unsupported key type ${String(jwk.kty)}${jwk.crv ? ` (${jwk.crv})` : ""}: use an EC P-256 or RSA public key`);
      }
    } catch (error) {
      throw new Error(`JWT_REGISTRY_TOKENS_PUBLIC_KEY: key ${i}${kid ? ` (kid ${kid})` : ""}: ${(error as Error).message}`);
    }
  }
  if (keys.length === 0) throw new Error("JWT_REGISTRY_TOKENS_PUBLIC_KEY holds no keys");
  return keys;
}

/** True for a string shaped like a compact JWS (three base64url parts). */
export function looksLikeJwt(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value);
}

/** What a token must say besides being signed by a configured key. */
export interface VerifyOptions {
  /** `JWT_AUDIENCE`: the `aud` it must name (a string, or an array holding it). */
  audience?: string;
  /** `JWT_ISSUER`: the `iss` it must have. */
  issuer?: string;
  /** The time to check `exp` and `nbf` against, in seconds since the epoch. */
  now?: number;
}

/**
 * Verifies a token's signature (only the algorithms the configured keys are for: never `none`
 * or HMAC), its `exp` and `nbf`, its `aud` and `iss` when required, and reads its
 * `capabilities` and optional `repositories`. Returns `undefined` for any token that does not
 * verify.
 *
 * @example
 * const claims = await verifyToken(token, keys, { audience: "r2-registry" });
 * claims?.capabilities; // ["pull"]
 */
export async function verifyToken(token: string, keys: VerificationKey[], options: VerifyOptions = {}): Promise<TokenClaims | undefined> {
  const { audience, issuer, now = Date.now() / 1000 } = options;
  if (!looksLikeJwt(token)) return undefined;
  let decoded: ReturnType<typeof decodeJwt>;
  try {
    decoded = decodeJwt(token);
  } catch {
    return undefined;
  }
  const { header, payload, signature, raw } = decoded;
  const kid = typeof header.kid === "string" ? header.kid : undefined;
  const candidates = keys.filter((k) => k.alg === header.alg && (kid === undefined || k.kid === kid));
  if (candidates.length === 0) return undefined;
  const data = new TextEncoder().encode(`${raw.header}.${raw.payload}`);
  let valid = false;
  for (const { alg, key } of candidates) {
    const params = alg.startsWith("ES") ? { name: "ECDSA", hash: ES_HASH[alg]! } : { name: "RSASSA-PKCS1-v1_5" };
    try {
      if (await crypto.subtle.verify(params, key, signature, data)) {
        valid = true;
        break;
      }
    } catch {
      // A malformed signature for this key: try the next one.
    }
  }
  if (!valid) return undefined;
  const claims = payload as unknown as Record<string, unknown>;
  if (claims.exp !== undefined && (typeof claims.exp !== "number" || now >= claims.exp + LEEWAY)) return undefined;
  if (claims.nbf !== undefined && (typeof claims.nbf !== "number" || now < claims.nbf - LEEWAY)) return undefined;
  if (issuer !== undefined && claims.iss !== issuer) return undefined;
  if (audience !== undefined && !(claims.aud === audience || (Array.isArray(claims.aud) && claims.aud.includes(audience)))) return undefined;
  const capabilities = claims.capabilities;
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === "string")) return undefined;
  const repositories = claims.repositories;
  if (repositories !== undefined && (!Array.isArray(repositories) || !repositories.every((r) => typeof r === "string"))) {
    return undefined;
  }
  const subject = [claims.sub, claims.username].find((s): s is string => typeof s === "string") ?? "token";
  const expiresAt = typeof claims.exp === "number" ? (claims.exp + LEEWAY) * 1000 : undefined;
  return { subject, capabilities, ...(repositories ? { repositories } : {}), ...(expiresAt !== undefined ? { expiresAt } : {}) };
}

/**
 * Whether a repository name matches one of a token's patterns (`*` matches any characters,
 * slashes included: `team-a/*` covers `team-a/app` and `team-a/tools/lint`).
 *
 * @example
 * matchesRepository("team-a/app", ["team-a/*"]); // true
 */
export function matchesRepository(name: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => {
    const regex = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    return regex.test(name);
  });
}
