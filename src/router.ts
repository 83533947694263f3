import { Router, type IRequest } from "itty-router";
import { apiVersionCheck } from "./handlers/base";
import { deleteBlob, getBlob, headBlob } from "./handlers/blobs";
import type { Context, Handler } from "./handlers/context";
import { listRepositories, listTags } from "./handlers/listing";
import { listReferrers } from "./handlers/referrers";
import { deleteManifest, getManifest, headManifest, putManifest } from "./handlers/manifests";
import { appendChunk, cancelUpload, finishUpload, startUpload, uploadStatus } from "./handlers/uploads";

type Route = [method: string, path: string, handler: Handler];

/** Every route under `/v2/`, most specific first (`:name+` is greedy and may contain `/`). */
export const ROUTES: Route[] = [
  ["GET", "/v2", apiVersionCheck],
  ["HEAD", "/v2", apiVersionCheck],
  ["GET", "/v2/_catalog", listRepositories],
  ["GET", "/v2/:name+/tags/list", listTags],
  ["GET", "/v2/:name+/manifests/:reference", getManifest],
  ["HEAD", "/v2/:name+/manifests/:reference", headManifest],
  ["PUT", "/v2/:name+/manifests/:reference", putManifest],
  ["DELETE", "/v2/:name+/manifests/:reference", deleteManifest],
  ["POST", "/v2/:name+/blobs/uploads", startUpload],
  ["GET", "/v2/:name+/blobs/uploads/:id", uploadStatus],
  ["PATCH", "/v2/:name+/blobs/uploads/:id", appendChunk],
  ["PUT", "/v2/:name+/blobs/uploads/:id", finishUpload],
  ["DELETE", "/v2/:name+/blobs/uploads/:id", cancelUpload],
  ["GET", "/v2/:name+/referrers/:digest", listReferrers],
  ["GET", "/v2/:name+/blobs/:digest", getBlob],
  ["HEAD", "/v2/:name+/blobs/:digest", headBlob],
  ["DELETE", "/v2/:name+/blobs/:digest", deleteBlob],
];

/**
 * Builds the `/v2/` router. `fetch(request, context)` answers `undefined` when no route matches.
 *
 * @example
 * const response = await createRouter().fetch(request, context);
 */
export function createRouter() {
  const router = Router<IRequest, [Context], Response>();
  for (const [method, path, handler] of ROUTES) router[method.toLowerCase()]!(path, handler);
  return router;
}

/** The methods the routes accept at a path (for 405 answers); empty when no route has it. */
export function allowedMethods(router: ReturnType<typeof createRouter>, pathname: string): string[] {
  const methods = new Set<string>();
  for (const [method, pattern] of router.routes) if (pattern.test(pathname)) methods.add(method);
  return [...methods];
}
