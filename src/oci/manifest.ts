import { z } from "zod";
import { RegistryError } from "../errors";
import { MAX_DIGEST_LENGTH, parseDigest, requireDigest } from "./digest";
import {
  baseMediaType,
  IMAGE_MANIFEST_TYPES,
  INDEX_TYPES,
  MediaType,
  NON_DISTRIBUTABLE_LAYER_TYPES,
  SCHEMA1_TYPES,
} from "./media-types";

/** Largest manifest accepted, as the spec suggests: 4 MiB. */
export const MAX_MANIFEST_SIZE = 4 * 1024 * 1024;

// A digest too long to be stored is refused after parsing, as DIGEST_INVALID (see `requireDigest`).
const digestString = z.string().refine((d) => d.length > MAX_DIGEST_LENGTH || parseDigest(d) !== undefined, { message: "invalid digest" });
const annotations = z.record(z.string(), z.string());

const descriptor = z.object({
  mediaType: z.string().min(1),
  digest: digestString,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: annotations.optional(),
  artifactType: z.string().optional(),
  data: z.string().optional(),
  platform: z
    .object({ architecture: z.string(), os: z.string() })
    .loose()
    .optional(),
});

const imageManifest = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptor,
  layers: z.array(descriptor),
  subject: descriptor.optional(),
  annotations: annotations.optional(),
});

const indexManifest = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(descriptor),
  subject: descriptor.optional(),
  annotations: annotations.optional(),
});

export type Descriptor = z.infer<typeof descriptor>;

/** A manifest that passed validation, with what it references. */
export interface ParsedManifest {
  /** The media type it is stored and served under. */
  mediaType: string;
  /** Its exact bytes. */
  bytes: Uint8Array;
  /** Blobs that must be in the repository (config and distributable layers). */
  blobs: string[];
  /** Descriptors that embed their content (`data`, base64): they need no blob if it verifies. */
  embedded: { digest: string; size: number; data: string }[];
  /** Child manifests that must be in the repository (for an index). */
  manifests: string[];
  /** The `subject` descriptor, when the manifest refers to another one. */
  subject?: Descriptor;
  /** The manifest's `artifactType`, or its config's media type for an image manifest. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(message: string, detail?: unknown): never {
  throw new RegistryError("MANIFEST_INVALID", message, { detail });
}

/** Refuses (DIGEST_INVALID) a descriptor whose digest is too long to be part of an R2 key. */
function requireStorableDigests(descriptors: (Descriptor | undefined)[]): void {
  for (const d of descriptors) if (d && d.digest.length > MAX_DIGEST_LENGTH) requireDigest(d.digest, "digest in the manifest");
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "invalid manifest";
  const path = issue.path.join(".");
  return path ? `${path}: ${issue.message}` : issue.message;
}

/**
 * Validates a manifest body sent with a PUT. The media type comes from the body's `mediaType`
 * or, when the body has none (it is optional in OCI), from the request's Content-Type.
 * Throws `MANIFEST_INVALID` with a message that says what is wrong (`DIGEST_INVALID` for a digest
 * longer than `MAX_DIGEST_LENGTH`, which could not be stored).
 *
 * @example
 * const parsed = parseManifest(bytes, request.headers.get("Content-Type"));
 * parsed.blobs; // digests the registry must already hold
 */
export function parseManifest(bytes: Uint8Array, contentType: string | null): ParsedManifest {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    invalid("manifest is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    invalid(`manifest is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) invalid("manifest must be a JSON object");
  const body = json as Record<string, unknown>;

  const header = baseMediaType(contentType);
  const declared = typeof body.mediaType === "string" ? body.mediaType : undefined;
  if (body.mediaType !== undefined && declared === undefined) invalid("mediaType: must be a string");
  const known = (t: string | undefined) =>
    t !== undefined && (IMAGE_MANIFEST_TYPES.has(t) || INDEX_TYPES.has(t) || SCHEMA1_TYPES.has(t));
  if (declared !== undefined && known(header) && header !== declared) {
    invalid(`mediaType ${declared} in the manifest does not match the Content-Type ${header}`);
  }
  let mediaType = declared ?? (known(header) ? header : undefined);
  if (mediaType === undefined) {
    if (body.schemaVersion === 1) mediaType = MediaType.DOCKER_SCHEMA1;
    else if ("manifests" in body) mediaType = MediaType.OCI_INDEX;
    else if ("config" in body) mediaType = MediaType.OCI_MANIFEST;
    else invalid("cannot tell the manifest's type: set its mediaType or the Content-Type header");
  }

  if (SCHEMA1_TYPES.has(mediaType)) {
    invalid("Docker schema 1 manifests are no longer accepted: push a schema 2 or OCI manifest");
  }
  if (IMAGE_MANIFEST_TYPES.has(mediaType)) {
    const parsed = imageManifest.safeParse(body);
    if (!parsed.success) invalid(firstIssue(parsed.error));
    const m = parsed.data;
    requireStorableDigests([m.config, ...m.layers, m.subject]);
    const layers = m.layers.filter((l) => !(l.urls?.length && NON_DISTRIBUTABLE_LAYER_TYPES.has(l.mediaType)));
    const all = [m.config, ...layers];
    return {
      mediaType,
      bytes,
      blobs: all.map((d) => d.digest),
      embedded: all.flatMap((d) => (d.data === undefined ? [] : [{ digest: d.digest, size: d.size, data: d.data }])),
      manifests: [],
      subject: m.subject,
      artifactType: m.artifactType || m.config.mediaType || undefined,
      annotations: m.annotations,
    };
  }
  if (INDEX_TYPES.has(mediaType)) {
    const parsed = indexManifest.safeParse(body);
    if (!parsed.success) invalid(firstIssue(parsed.error));
    const m = parsed.data;
    requireStorableDigests([...m.manifests, m.subject]);
    return {
      mediaType,
      bytes,
      blobs: [],
      embedded: [],
      manifests: m.manifests.map((d) => d.digest),
      subject: m.subject,
      artifactType: m.artifactType || undefined,
      annotations: m.annotations,
    };
  }
  return invalid(`unsupported manifest media type ${mediaType}`);
}

/** What a stored manifest refers to. */
export interface References {
  blobs: string[];
  manifests: string[];
  subject?: string;
}

/**
 * Reads the references of a stored manifest (any schema, including schema 1) for collection and
 * checks; undefined for bytes that are not a JSON object (what they refer to cannot be known).
 *
 * @example
 * const refs = parseReferences(storedBytes); // undefined: corrupt
 */
export function parseReferences(bytes: Uint8Array): References | undefined {
  let body: any;
  try {
    body = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const digests = (list: unknown, key: string): string[] =>
    Array.isArray(list) ? list.map((d) => d?.[key]).filter((d): d is string => typeof d === "string") : [];
  const blobs = [
    ...(typeof body.config?.digest === "string" ? [body.config.digest as string] : []),
    ...digests(body.layers, "digest"),
    ...digests(body.fsLayers, "blobSum"),
  ];
  const subject = typeof body.subject?.digest === "string" ? (body.subject.digest as string) : undefined;
  return { blobs, manifests: digests(body.manifests, "digest"), ...(subject ? { subject } : {}) };
}

/**
 * {@link parseReferences}, with empty lists for bytes it cannot read.
 *
 * @example
 * const { blobs, manifests } = referencesOf(storedBytes);
 */
export function referencesOf(bytes: Uint8Array): References {
  return parseReferences(bytes) ?? { blobs: [], manifests: [] };
}
