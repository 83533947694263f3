/** Test helpers for token auth: key pairs, signing, and the setting's base64 form. */

export type Alg = "ES256" | "RS256";

export interface TestKey {
  alg: Alg;
  kid?: string;
  privateKey: CryptoKey;
  publicJwk: JsonWebKey & { kid?: string };
}

function b64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return btoa(String.fromCharCode(...data)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A fresh key pair for an algorithm. */
export async function makeKey(alg: Alg, kid?: string): Promise<TestKey> {
  const params =
    alg === "ES256"
      ? { name: "ECDSA", namedCurve: "P-256" }
      : { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" };
  const pair = (await crypto.subtle.generateKey(params, true, ["sign", "verify"])) as CryptoKeyPair;
  const publicJwk = (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey & { kid?: string };
  if (kid) publicJwk.kid = kid;
  return { alg, kid, privateKey: pair.privateKey, publicJwk };
}

/** `JWT_REGISTRY_TOKENS_PUBLIC_KEY` for one key or a key set: base64 of the JSON. */
export function setting(...keys: TestKey[]): string {
  const json = keys.length === 1 ? keys[0]!.publicJwk : { keys: keys.map((k) => k.publicJwk) };
  return btoa(JSON.stringify(json));
}

/** Signs claims into a compact JWT (header overrides for the negative tests). */
export async function sign(key: TestKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const h = b64url(JSON.stringify({ alg: key.alg, typ: "JWT", ...(key.kid ? { kid: key.kid } : {}), ...header }));
  const p = b64url(JSON.stringify(claims));
  const params = key.alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
  const signature = await crypto.subtle.sign(params, key.privateKey, new TextEncoder().encode(`${h}.${p}`));
  return `${h}.${p}.${b64url(new Uint8Array(signature))}`;
}

/** Claims valid for an hour. */
export function claims(capabilities: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { sub: "ci", capabilities, iat: now, exp: now + 3600, ...extra };
}

/** An HS256 token whose secret is the public key's JSON (the classic algorithm-confusion attack). */
export async function hs256WithPublicKey(key: TestKey, body: Record<string, unknown>): Promise<string> {
  const secret = await crypto.subtle.importKey("raw", new TextEncoder().encode(JSON.stringify(key.publicJwk)), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const h = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const p = b64url(JSON.stringify(body));
  const signature = await crypto.subtle.sign("HMAC", secret, new TextEncoder().encode(`${h}.${p}`));
  return `${h}.${p}.${b64url(new Uint8Array(signature))}`;
}

export { b64url };
