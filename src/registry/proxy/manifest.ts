import { digestBytes, parseDigest } from "../../oci/digest";
import { MAX_MANIFEST_SIZE, parseManifest, type ParsedManifest } from "../../oci/manifest";
import { baseMediaType, MediaType } from "../../oci/media-types";
import { MANIFEST_TYPES, UpstreamError, type Upstream } from "./upstream";

/** A manifest from an upstream, verified against its digest. */
export interface Fetched {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
  /** Absent when it is JSON this registry does not store (e.g. Docker schema 1): served uncached. */
  parsed?: ParsedManifest;
  upstream: Upstream;
}

function isJsonObject(bytes: Uint8Array): boolean {
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/**
 * GETs a manifest from an upstream: `null` on a 404; an {@link UpstreamError} when its
 * `Content-Type` is not a manifest type (`text/html` from a login page or a captive portal),
 * its body is over {@link MAX_MANIFEST_SIZE} (read no further), or its bytes do not match the
 * digest asked for or announced (`Docker-Content-Digest`).
 *
 * @example
 * const fetched = await readManifest(hub, "alpine", "3.20"); // GET …/library/alpine/manifests/3.20
 */
export async function readManifest(upstream: Upstream, name: string, reference: string): Promise<Fetched | null> {
  const response = await upstream.manifest(name, reference, "GET");
  if (!response) return null;
  const contentType = response.headers.get("Content-Type");
  const type = baseMediaType(contentType);
  if (!type || !MANIFEST_TYPES.includes(type)) {
    await response.body?.cancel().catch(() => {});
    throw new UpstreamError(`the manifest came as ${type ?? "(no Content-Type)"}, not a manifest type (a login page or a captive portal?); not used`);
  }
  const bytes = await upstream.readBytes(response, MAX_MANIFEST_SIZE, "the manifest");
  const expected = parseDigest(reference) !== undefined ? reference : response.headers.get("Docker-Content-Digest")?.trim() || undefined;
  let digest: string;
  if (expected) {
    const algorithm = parseDigest(expected)?.algorithm;
    if (algorithm !== "sha256" && algorithm !== "sha512") throw new UpstreamError(`cannot verify digest ${expected}`);
    digest = await digestBytes(bytes, algorithm);
    if (digest !== expected) throw new UpstreamError(`manifest bytes have digest ${digest}, not ${expected}: not used`);
  } else {
    digest = await digestBytes(bytes);
  }
  let parsed: ParsedManifest | undefined;
  try {
    parsed = parseManifest(bytes, contentType);
  } catch (error) {
    // Something JSON (e.g. Docker schema 1) is passed on uncached; anything else is garbage.
    if (!isJsonObject(bytes)) throw new UpstreamError("the manifest is not a JSON object");
    console.warn(`r2-registry: upstream ${upstream.config.registry}: manifest ${name}:${reference} is served but not cached: ${error instanceof Error ? error.message : String(error)}`);
  }
  const mediaType = parsed?.mediaType ?? type ?? MediaType.OCI_MANIFEST;
  return { bytes, digest, mediaType, upstream, ...(parsed ? { parsed } : {}) };
}
