import { RegistryError } from "../errors";
import { parseRangeHeader } from "../http";
import type { BlobInfo } from "../registry/registry";
import { digestParam, nameParam, type Handler } from "./context";

function blobHeaders(info: Pick<BlobInfo, "digest">): Headers {
  return new Headers({
    "Content-Type": "application/octet-stream",
    "Docker-Content-Digest": info.digest,
    ETag: `"${info.digest}"`,
    "Accept-Ranges": "bytes",
    "Cache-Control": "max-age=31536000, immutable",
  });
}

function blobUnknown(name: string, digest: string): RegistryError {
  return new RegistryError("BLOB_UNKNOWN", `blob ${digest} is not in repository ${name}`, { detail: { digest } });
}

/**
 * `GET /v2/<name>/blobs/<digest>`: streams a blob; a `Range: bytes=a-b` request gets 206 with
 * just those bytes.
 *
 * @example
 * curl -u user:pass -H 'Range: bytes=0-99' https://registry.example/v2/foo/blobs/sha256:…
 */
export const getBlob: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const digest = digestParam(request);
  const range = parseRangeHeader(request.headers.get("Range"));
  const blob = await registry.getBlob(name, digest.value, range);
  if (!blob) throw blobUnknown(name, digest.value);
  const headers = blobHeaders(blob);
  if (blob.range) {
    headers.set("Content-Range", `bytes ${blob.range.start}-${blob.range.end}/${blob.size}`);
    headers.set("Content-Length", String(blob.range.end - blob.range.start + 1));
    return new Response(blob.body, { status: 206, headers });
  }
  // A blob an upstream streams without its length goes out chunked.
  if (blob.size !== undefined) headers.set("Content-Length", String(blob.size));
  return new Response(blob.body, { status: 200, headers });
};

/** `HEAD /v2/<name>/blobs/<digest>`: whether the repository has the blob, and its size. */
export const headBlob: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const digest = digestParam(request);
  const info = await registry.statBlob(name, digest.value);
  if (!info) throw blobUnknown(name, digest.value);
  const headers = blobHeaders(info);
  headers.set("Content-Length", String(info.size));
  return new Response(null, { status: 200, headers });
};

/** `DELETE /v2/<name>/blobs/<digest>`: removes the blob from the repository (202). */
export const deleteBlob: Handler = async (request, { registry }) => {
  const name = nameParam(request);
  const digest = digestParam(request);
  if (!(await registry.deleteBlob(name, digest.value))) throw blobUnknown(name, digest.value);
  return new Response(null, { status: 202, headers: { "Content-Length": "0" } });
};
