import { RegistryError } from "../errors";
import { digestBytes, looksLikeDigest, parseDigest, type VerifiableAlgorithm } from "../oci/digest";
import { MAX_MANIFEST_SIZE, parseManifest, type ParsedManifest } from "../oci/manifest";
import { isTag, parseReference, requirePushName } from "../oci/names";
import type { ManifestInfo, Registry } from "../registry/registry";
import { readLimited } from "../streams";
import { contentLength } from "../http";
import { nameParam, param, pathOf, type Handler } from "./context";

/**
 * The headers of a manifest answer (a plain record: the Response builds its Headers once).
 * `Last-Modified` says when the manifest was stored under the reference asked for (for a tag,
 * when it was last pushed): the web UI shows it as the push time.
 */
function manifestHeaders(info: ManifestInfo): Record<string, string> {
  const headers: Record<string, string> = {
    "Content-Type": info.mediaType,
    "Content-Length": String(info.size),
    "Docker-Content-Digest": info.digest,
    ETag: `"${info.digest}"`,
  };
  if (info.modified) headers["Last-Modified"] = info.modified.toUTCString();
  return headers;
}

function manifestUnknown(name: string, reference: string): RegistryError {
  const shown = reference.slice(0, 200);
  return new RegistryError("MANIFEST_UNKNOWN", `manifest ${shown} is not in repository ${name}`, {
    detail: { name, reference: shown },
  });
}

/**
 * The reference of a read or a delete. A malformed digest is `DIGEST_INVALID`; anything else that
 * is not a valid tag names nothing a push could have stored, so it is `MANIFEST_UNKNOWN` (404)
 * without asking storage or pull-through upstreams (the spec's conformance suite asks for
 * `.INVALID_MANIFEST_NAME` and expects 404). Only a push refuses it as `TAG_INVALID`.
 *
 * @example
 * lookupReference("foo", ".INVALID_MANIFEST_NAME"); // throws MANIFEST_UNKNOWN
 * lookupReference("foo", "sha256:xyz"); // throws DIGEST_INVALID
 */
function lookupReference(name: string, reference: string): string {
  if (!looksLikeDigest(reference) && !isTag(reference)) throw manifestUnknown(name, reference);
  parseReference(reference);
  return reference;
}

/**
 * `GET /v2/<name>/manifests/<reference>`: the manifest's exact bytes under the media type it was
 * pushed with, by tag or digest.
 *
 * @example
 * curl -u user:pass -H 'Accept: application/vnd.oci.image.index.v1+json' https://registry.example/v2/foo/manifests/latest
 */
export const getManifest: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const reference = lookupReference(name, param(request, "reference"));
  const manifest = await registry.getManifest(name, reference);
  if (!manifest) throw manifestUnknown(name, reference);
  return new Response(manifest.body, { status: 200, headers: manifestHeaders(manifest) });
};

/** `HEAD /v2/<name>/manifests/<reference>`: the manifest's digest, size and media type. */
export const headManifest: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const reference = lookupReference(name, param(request, "reference"));
  const info = await registry.statManifest(name, reference);
  if (!info) throw manifestUnknown(name, reference);
  return new Response(null, { status: 200, headers: manifestHeaders(info) });
};

/** True when a descriptor's embedded `data` is the content its digest and size name. */
async function embeddedVerifies(embedded: { digest: string; size: number; data: string }): Promise<boolean> {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(embedded.data), (c) => c.charCodeAt(0));
  } catch {
    return false;
  }
  const algorithm = parseDigest(embedded.digest)?.algorithm;
  if (bytes.byteLength !== embedded.size || (algorithm !== "sha256" && algorithm !== "sha512")) return false;
  return (await digestBytes(bytes, algorithm)) === embedded.digest;
}

/**
 * Checks that everything a manifest references is in the repository (a blob whose descriptor
 * embeds verified `data` needs none).
 */
async function requireReferences(registry: Registry, name: string, manifest: ParsedManifest): Promise<void> {
  const present = async (digest: string) => {
    if (await registry.statBlob(name, digest)) return true;
    const embedded = manifest.embedded.find((e) => e.digest === digest);
    return embedded !== undefined && (await embeddedVerifies(embedded));
  };
  const checks = [
    ...manifest.blobs.map(async (digest) => ((await present(digest)) ? undefined : { digest, kind: "blob" })),
    ...manifest.manifests.map(async (digest) =>
      (await registry.statManifest(name, digest)) ? undefined : { digest, kind: "manifest" },
    ),
  ];
  const missing = (await Promise.all(checks)).find((m) => m !== undefined);
  if (missing) {
    throw new RegistryError(
      "MANIFEST_BLOB_UNKNOWN",
      `the manifest references ${missing.kind} ${missing.digest}, which is not in repository ${name}: push it first`,
      { detail: { digest: missing.digest } },
    );
  }
}

/**
 * `PUT /v2/<name>/manifests/<reference>`: stores a manifest under its digest and, for a tag
 * reference (or `?tag=` on a digest reference), under those tags. 201 with `Docker-Content-Digest`.
 *
 * @example
 * curl -X PUT -u user:pass -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
 *   --data-binary @manifest.json https://registry.example/v2/foo/manifests/v1
 */
export const putManifest: Handler = async (request, { registry, url }) => {
  const name = requirePushName(nameParam(request), url.host);
  const reference = parseReference(param(request, "reference"));
  const declared = contentLength(request);
  const tooLarge = () =>
    new RegistryError("SIZE_INVALID", `manifest larger than ${MAX_MANIFEST_SIZE} bytes`, { status: 413 });
  if (declared !== undefined && declared > MAX_MANIFEST_SIZE) throw tooLarge();
  const bytes = await readLimited(request.body, MAX_MANIFEST_SIZE);
  if (!bytes) throw tooLarge();
  const manifest = parseManifest(bytes, request.headers.get("Content-Type"));

  let digest: string;
  const tags: string[] = [];
  if (reference.kind === "digest") {
    const algorithm = reference.digest.algorithm;
    if (algorithm !== "sha256" && algorithm !== "sha512") {
      throw new RegistryError("DIGEST_INVALID", `unsupported digest algorithm ${algorithm}: use sha256 or sha512`);
    }
    digest = await digestBytes(bytes, algorithm as VerifiableAlgorithm);
    if (digest !== reference.digest.value) {
      throw new RegistryError("DIGEST_INVALID", `the manifest's digest is ${digest}, not ${reference.digest.value}`, {
        detail: { expected: reference.digest.value, actual: digest },
      });
    }
    for (const tag of url.searchParams.getAll("tag")) {
      if (!isTag(tag)) throw new RegistryError("TAG_INVALID", `invalid tag ${JSON.stringify(tag.slice(0, 200))}`);
      if (!tags.includes(tag)) tags.push(tag);
    }
  } else {
    digest = await digestBytes(bytes);
    tags.push(reference.tag);
  }

  // Re-tagging a manifest the repository already holds touches no blobs. A push is checked
  // against what is stored here, never against pull-through upstreams.
  const local = registry.withoutUpstreams?.() ?? registry;
  // A garbage collection running meanwhile spares what this push relies on (see R2Fence).
  const intent = await local.announce?.(name, [digest, ...manifest.blobs, ...manifest.manifests]);
  let info: ManifestInfo;
  try {
    if (!(await local.statManifest(name, digest))) await requireReferences(local, name, manifest);
    info = await registry.putManifest(name, manifest, digest, tags);
  } finally {
    await intent?.release();
  }
  const headers = new Headers({
    Location: `/v2/${pathOf(name)}/manifests/${info.digest}`,
    "Docker-Content-Digest": info.digest,
    "Content-Length": "0",
  });
  if (manifest.subject) headers.set("OCI-Subject", manifest.subject.digest);
  if (reference.kind === "digest" && tags.length > 0) headers.set("OCI-Tag", tags.join(", "));
  return new Response(null, { status: 201, headers });
};

/**
 * `DELETE /v2/<name>/manifests/<reference>`: by tag removes just the tag; by digest removes the
 * manifest and every tag pointing at it (202). An unknown reference, or one that cannot be a tag,
 * is 404 `MANIFEST_UNKNOWN`.
 */
export const deleteManifest: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const reference = lookupReference(name, param(request, "reference"));
  if (!(await registry.deleteManifest(name, reference))) throw manifestUnknown(name, reference);
  return new Response(null, { status: 202, headers: { "Content-Length": "0" } });
};
