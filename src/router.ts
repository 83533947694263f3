import { Router, type IRequest } from "itty-router";
import { apiVersionCheck } from "./handlers/base";
import { deleteBlob, getBlob, headBlob } from "./handlers/blobs";
import { authorize, type Access } from "./auth";
import { nameParam, type Context, type Handler } from "./handlers/context";
import { collectRegistry, collectRepository } from "./handlers/gc";
import { retainEvery, retainOne } from "./handlers/retention";
import { listRepositories, listTags } from "./handlers/listing";
import { listReferrers } from "./handlers/referrers";
import { deleteManifest, getManifest, headManifest, putManifest } from "./handlers/manifests";
import { appendChunk, cancelUpload, finishUpload, startUpload, uploadStatus } from "./handlers/uploads";

type Route = [method: string, path: string, access: Access, handler: Handler];

/**
 * Every route under `/v2/`, most specific first (`:name+` is greedy and may contain `/`). Garbage
 * collection and retention runs are push-level operations; with `dry_run` or `report` their
 * answers list what the repository holds, so their handlers check pull too (`handlers/gc.ts`,
 * `handlers/retention.ts`).
 */
export const ROUTES: Route[] = [
  ["GET", "/v2", "login", apiVersionCheck],
  ["HEAD", "/v2", "login", apiVersionCheck],
  ["GET", "/v2/_catalog", "pull", listRepositories],
  ["POST", "/v2/_gc", "push", collectRegistry],
  ["POST", "/v2/_retention", "push", retainEvery],
  ["GET", "/v2/:name+/tags/list", "pull", listTags],
  ["GET", "/v2/:name+/manifests/:reference", "pull", getManifest],
  ["HEAD", "/v2/:name+/manifests/:reference", "probe", headManifest],
  ["PUT", "/v2/:name+/manifests/:reference", "push", putManifest],
  ["DELETE", "/v2/:name+/manifests/:reference", "push", deleteManifest],
  ["POST", "/v2/:name+/blobs/uploads", "push", startUpload],
  ["GET", "/v2/:name+/blobs/uploads/:id", "push", uploadStatus],
  ["PATCH", "/v2/:name+/blobs/uploads/:id", "push", appendChunk],
  ["PUT", "/v2/:name+/blobs/uploads/:id", "push", finishUpload],
  ["DELETE", "/v2/:name+/blobs/uploads/:id", "push", cancelUpload],
  ["GET", "/v2/:name+/referrers/:digest", "pull", listReferrers],
  ["GET", "/v2/:name+/blobs/:digest", "pull", getBlob],
  ["HEAD", "/v2/:name+/blobs/:digest", "probe", headBlob],
  ["DELETE", "/v2/:name+/blobs/:digest", "push", deleteBlob],
  ["POST", "/v2/:name+/gc", "push", collectRepository],
  ["POST", "/v2/:name+/retention", "push", retainOne],
];

/** Wraps a handler so it runs only for a principal allowed `access` on the route's repository. */
function guarded(access: Access, handler: Handler): Handler {
  return (request, context) => {
    authorize(context.principal, access, request.params.name === undefined ? undefined : nameParam(request));
    return handler(request, context);
  };
}

/**
 * Builds the `/v2/` router. `fetch(request, context)` answers `undefined` when no route matches.
 *
 * @example
 * const response = await createRouter().fetch(request, context);
 */
export function createRouter() {
  const router = Router<IRequest, [Context], Response>();
  for (const [method, path, access, handler] of ROUTES) router[method.toLowerCase()]!(path, guarded(access, handler));
  return router;
}

/** The methods the routes accept at a path (for 405 answers); empty when no route has it. */
export function allowedMethods(router: ReturnType<typeof createRouter>, pathname: string): string[] {
  const methods = new Set<string>();
  for (const [method, pattern] of router.routes) if (pattern.test(pathname)) methods.add(method);
  return [...methods];
}
