import { RegistryError } from "../errors";
import { looksLikeDigest, requireDigest, type Digest } from "./digest";

// OCI Distribution Spec: <name> components, separated by "/".
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Longest tag: the spec's grammar allows 128 characters. */
export const MAX_TAG_LENGTH = 128;

/**
 * Longest repository name accepted (CNCF distribution's limit). The spec adds that many clients
 * limit `<host>/<name>` to 255 characters (see {@link requirePushName}). Names, tags and digests
 * together stay within R2's 1,024-byte keys: see `MAX_KEY_BYTES` in `registry/r2/keys.ts`.
 */
export const MAX_NAME_LENGTH = 255;

/**
 * Longest `<host>/<name>` many clients accept: "Many clients impose a limit of 255 characters on
 * the length of the concatenation of the registry hostname (and optional port), `/`, and `<name>`
 * value" (OCI Distribution Spec v1.1, "Pulling manifests"; registries should avoid such names).
 */
export const MAX_HOST_AND_NAME_LENGTH = 255;

/** True for a repository name that follows the spec's grammar. */
export function isName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && name.split("/").every((c) => COMPONENT.test(c));
}

/**
 * Validates a repository name against the spec's grammar; throws `NAME_INVALID`.
 *
 * @example
 * requireName("library/ubuntu"); // ok
 * requireName("Library/Ubuntu"); // throws NAME_INVALID
 */
export function requireName(name: string): string {
  if (!isName(name)) {
    throw new RegistryError(
      "NAME_INVALID",
      `invalid repository name ${JSON.stringify(name.slice(0, 300))}: use lowercase letters, digits and . _ - separators, components joined by /, at most ${MAX_NAME_LENGTH} characters`,
      { detail: { name: name.slice(0, 300) } },
    );
  }
  return name;
}

/**
 * Validates the name of a repository being pushed to, as {@link requireName} does, and that
 * `<host>/<name>` fits the 255 characters many clients allow (the spec asks registries to avoid
 * longer ones): a repository those clients could not pull is refused before anything is stored.
 * Reads are not checked, so repositories already stored stay readable.
 *
 * @example
 * requirePushName("team/app", "registry.example.org:5000"); // ok: 25 + 1 + 8 characters
 */
export function requirePushName(name: string, host: string): string {
  requireName(name);
  const room = MAX_HOST_AND_NAME_LENGTH - host.length - 1;
  if (name.length > room) {
    throw new RegistryError(
      "NAME_INVALID",
      `repository name of ${name.length} characters: with this registry's host ${host} it may have at most ${Math.max(0, room)} (many clients allow 255 characters for <host>/<name>)`,
      { detail: { name: name.slice(0, 300) } },
    );
  }
  return name;
}

/** True for a valid tag. */
export function isTag(reference: string): boolean {
  return TAG.test(reference);
}

/** A manifest reference from a URL: a tag or a digest. */
export type Reference = { kind: "tag"; tag: string } | { kind: "digest"; digest: Digest };

/**
 * Parses a manifest reference; throws `TAG_INVALID` or `DIGEST_INVALID`.
 *
 * @example
 * parseReference("latest"); // { kind: "tag", tag: "latest" }
 */
export function parseReference(reference: string): Reference {
  if (looksLikeDigest(reference)) return { kind: "digest", digest: requireDigest(reference) };
  if (!isTag(reference)) {
    throw new RegistryError(
      "TAG_INVALID",
      `invalid tag ${JSON.stringify(reference.slice(0, 200))}: up to 128 letters, digits, _ . -, not starting with . or -`,
    );
  }
  return { kind: "tag", tag: reference };
}
