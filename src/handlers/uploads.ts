import type { IRequest } from "itty-router";
import { mayAccess } from "../auth";
import { RegistryError } from "../errors";
import { contentLength, parseContentRange } from "../http";
import { requireDigest } from "../oci/digest";
import { isName, requirePushName } from "../oci/names";
import type { Chunk, UploadStatus } from "../registry/registry";
import { MIN_CHUNK_SIZE } from "../registry/limits";
import { nameParam, param, pathOf, type Handler } from "./context";

/** The inclusive `Range` of bytes an upload holds (`0-0` when empty, as distribution answers). */
function rangeOf(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}

function sessionHeaders(status: UploadStatus): Headers {
  return new Headers({
    Location: `/v2/${pathOf(status.name)}/blobs/uploads/${status.id}`,
    Range: rangeOf(status.offset),
    "Docker-Upload-UUID": status.id,
    "Content-Length": "0",
  });
}

function created(name: string, digest: string): Response {
  return new Response(null, {
    status: 201,
    headers: { Location: `/v2/${pathOf(name)}/blobs/${digest}`, "Docker-Content-Digest": digest, "Content-Length": "0" },
  });
}

/** The chunk a PATCH or PUT carries, with what Content-Length and Content-Range say about it. */
function chunkOf(request: IRequest): Chunk {
  const length = contentLength(request);
  const range = parseContentRange(request.headers.get("Content-Range"));
  if (range && length !== undefined && range.end - range.start + 1 !== length) {
    throw new RegistryError(
      "RANGE_INVALID",
      `Content-Range ${range.start}-${range.end} covers ${range.end - range.start + 1} bytes but Content-Length is ${length}`,
    );
  }
  return { body: request.body, length: length ?? (range ? range.end - range.start + 1 : undefined), start: range?.start };
}

/**
 * `POST /v2/<name>/blobs/uploads/`: opens an upload session (202), stores a whole blob sent with
 * `?digest=` (201), or mounts a blob of another repository with `?mount=<digest>&from=<repo>`
 * (201; a session when `from` lacks it).
 *
 * @example
 * curl -X POST -u user:pass https://registry.example/v2/foo/blobs/uploads/
 */
export const startUpload: Handler = async (request, { registry, config, url, principal }) => {
  const name = requirePushName(nameParam(request), url.host);
  const mount = url.searchParams.get("mount");
  const from = url.searchParams.get("from");
  if (mount && from) {
    const digest = requireDigest(mount, "mount digest");
    // A `from` that is invalid, or that the caller may not pull from, cannot lend the blob: a
    // session is opened instead.
    const mounted = isName(from) && mayAccess(principal, "pull", from) ? await registry.mountBlob(name, digest.value, from) : null;
    if (mounted) return created(name, mounted.digest);
  }
  const digest = url.searchParams.get("digest");
  if (digest !== null) {
    const info = await registry.putBlob(name, digest, { body: request.body, length: contentLength(request) ?? undefined });
    return created(name, info.digest);
  }
  const status = await registry.startUpload(name);
  const headers = sessionHeaders(status);
  headers.set("OCI-Chunk-Min-Length", String(MIN_CHUNK_SIZE));
  headers.set("OCI-Chunk-Max-Length", String(config.maxChunkSize));
  return new Response(null, { status: 202, headers });
};

/** `GET /v2/<name>/blobs/uploads/<id>`: where an upload stands (204 with `Range`). */
export const uploadStatus: Handler = async (request, { registry }) => {
  const status = await registry.getUpload(nameParam(request), param(request, "id"));
  return new Response(null, { status: 204, headers: sessionHeaders(status) });
};

/**
 * `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk (streamed; `Content-Range` optional).
 * A chunk that does not start where the upload stands gets 416 with the current `Range`.
 */
export const appendChunk: Handler = async (request, { registry }) => {
  const status = await registry.appendUpload(nameParam(request), param(request, "id"), chunkOf(request));
  return new Response(null, { status: 202, headers: sessionHeaders(status) });
};

/** `PUT /v2/<name>/blobs/uploads/<id>?digest=…`: appends an optional last chunk and publishes the blob (201). */
export const finishUpload: Handler = async (request, { registry, url }) => {
  const name = nameParam(request);
  const digest = url.searchParams.get("digest");
  if (!digest) throw new RegistryError("DIGEST_INVALID", "closing an upload needs ?digest=<digest of the whole blob>");
  const info = await registry.finishUpload(name, param(request, "id"), digest, chunkOf(request));
  return created(name, info.digest);
};

/** `DELETE /v2/<name>/blobs/uploads/<id>`: cancels an upload and frees what it stored (204). */
export const cancelUpload: Handler = async (request, { registry }) => {
  await registry.cancelUpload(nameParam(request), param(request, "id"));
  return new Response(null, { status: 204, headers: { "Content-Length": "0" } });
};
