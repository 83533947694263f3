import { RegistryError } from "../errors";
import { looksLikeDigest, parseDigest, type Digest } from "./digest";

// OCI Distribution Spec: <name> components, separated by "/".
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Longest repository name accepted (CNCF distribution's limit). */
export const MAX_NAME_LENGTH = 255;

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
  if (looksLikeDigest(reference)) {
    const digest = parseDigest(reference);
    if (!digest) throw new RegistryError("DIGEST_INVALID", `invalid digest ${JSON.stringify(reference.slice(0, 200))}`);
    return { kind: "digest", digest };
  }
  if (!isTag(reference)) {
    throw new RegistryError(
      "TAG_INVALID",
      `invalid tag ${JSON.stringify(reference.slice(0, 200))}: up to 128 letters, digits, _ . -, not starting with . or -`,
    );
  }
  return { kind: "tag", tag: reference };
}
