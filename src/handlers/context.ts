import type { IRequest } from "itty-router";
import type { Principal } from "../auth";
import type { Config } from "../config";
import { RegistryError } from "../errors";
import { requireDigest, type Digest } from "../oci/digest";
import { requireName } from "../oci/names";
import type { Registry } from "../registry/registry";

/** What every handler receives besides the request. */
export interface Context {
  registry: Registry;
  config: Config;
  /** Who is asking (already authorized for the route). */
  principal: Principal;
  url: URL;
  /** Runs work after the response (ExecutionContext.waitUntil). */
  waitUntil(promise: Promise<unknown>): void;
  /** The bucket, for features that keep their own state in it (retention runs' progress). */
  bucket?: R2Bucket;
}

/** A route handler. */
export type Handler = (request: IRequest, context: Context) => Promise<Response>;

function decoded(value: string | undefined, what: string): string {
  try {
    return decodeURIComponent(value ?? "");
  } catch {
    throw new RegistryError(what === "name" ? "NAME_INVALID" : "DIGEST_INVALID", `malformed percent-encoding in the ${what}`);
  }
}

/**
 * The validated repository name of a route, checked once per request (the route's guard asks,
 * then its handler).
 */
export function nameParam(request: IRequest): string {
  return (request.validatedName ??= requireName(decoded(request.params.name, "name")));
}

/** A raw (decoded) route parameter. */
export function param(request: IRequest, key: string): string {
  return decoded(request.params[key], key);
}

/** A validated digest route parameter; throws DIGEST_INVALID. */
export function digestParam(request: IRequest, key = "digest"): Digest {
  return requireDigest(param(request, key));
}

/** Encodes a repository name for use in a Location header path. */
export function pathOf(name: string): string {
  return name.split("/").map(encodeURIComponent).join("/");
}
