import { RegistryError } from "../errors";

/** A parsed content digest such as `sha256:9f86d0…`. */
export interface Digest {
  algorithm: string;
  encoded: string;
  /** `algorithm:encoded`, as written on the wire. */
  value: string;
}

// OCI image-spec descriptor grammar: algorithm components joined by + . _ -, then an encoded part.
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Registered algorithms and the exact shape of their encoded part. */
const REGISTERED: Record<string, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

/**
 * Longest digest accepted anywhere (a URL, a query, a manifest's descriptors). The spec's grammar
 * has no bound, but digests become parts of R2 keys, which are at most 1,024 bytes: the longest,
 * `<name>/_referrers/<subject digest>/<digest>`, stays under it with two such digests and a name
 * of 255 characters (see `MAX_KEY_BYTES` in `registry/r2/keys.ts`). sha512 digests have 135.
 */
export const MAX_DIGEST_LENGTH = 256;

/** Algorithms this registry can verify content against (R2 checks them on write). */
export const VERIFIABLE_ALGORITHMS = ["sha256", "sha512"] as const;
export type VerifiableAlgorithm = (typeof VERIFIABLE_ALGORITHMS)[number];

/**
 * Parses a digest string; `undefined` if it does not follow the grammar.
 *
 * @example
 * parseDigest("sha256:" + "a".repeat(64))?.algorithm; // "sha256"
 */
export function parseDigest(value: string): Digest | undefined {
  if (value.length > MAX_DIGEST_LENGTH || !DIGEST.test(value)) return undefined;
  const colon = value.indexOf(":");
  const algorithm = value.slice(0, colon);
  const encoded = value.slice(colon + 1);
  const shape = REGISTERED[algorithm];
  if (shape && !shape.test(encoded)) return undefined;
  return { algorithm, encoded, value };
}

/**
 * Parses a digest a client sent (`what` names where, for the message); throws `DIGEST_INVALID`
 * saying what is wrong: its length (over {@link MAX_DIGEST_LENGTH}) or its form.
 *
 * @example
 * requireDigest(url.searchParams.get("mount") ?? "", "mount digest");
 */
export function requireDigest(value: string, what = "digest"): Digest {
  const digest = parseDigest(value);
  if (digest) return digest;
  const shown = JSON.stringify(value.slice(0, 200));
  const message =
    value.length > MAX_DIGEST_LENGTH
      ? `invalid ${what} ${shown}…: ${value.length} characters, at most ${MAX_DIGEST_LENGTH} are accepted`
      : `invalid ${what} ${shown}`;
  throw new RegistryError("DIGEST_INVALID", message, { detail: { digest: value.slice(0, 200) } });
}

/** True when the string looks like a digest (has the `algo:` form) rather than a tag. */
export function looksLikeDigest(reference: string): boolean {
  return reference.includes(":");
}

/**
 * Parses a digest the registry must verify content against (sha256 or sha512).
 * Throws `DIGEST_INVALID` otherwise.
 *
 * @example
 * const d = requireVerifiableDigest(url.searchParams.get("digest"));
 */
export function requireVerifiableDigest(value: string | null | undefined): Digest & { algorithm: VerifiableAlgorithm } {
  if (!value) throw new RegistryError("DIGEST_INVALID", "a digest query parameter is required");
  const digest = requireDigest(value);
  if (!(VERIFIABLE_ALGORITHMS as readonly string[]).includes(digest.algorithm)) {
    throw new RegistryError("DIGEST_INVALID", `unsupported digest algorithm ${digest.algorithm}: use sha256 or sha512`);
  }
  return digest as Digest & { algorithm: VerifiableAlgorithm };
}

/**
 * Computes the digest of a (small, in-memory) byte array, e.g. a manifest.
 *
 * @example
 * await digestBytes(new TextEncoder().encode("{}")); // "sha256:44136f…"
 */
export async function digestBytes(bytes: Uint8Array, algorithm: VerifiableAlgorithm = "sha256"): Promise<string> {
  const name = algorithm === "sha256" ? "SHA-256" : "SHA-512";
  const hash = await crypto.subtle.digest(name, bytes);
  return `${algorithm}:${toHex(new Uint8Array(hash))}`;
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Bytes of a lowercase hex string. */
export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
