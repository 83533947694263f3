import { RegistryError } from "../../errors";
import { UpstreamStatus, UpstreamTimeout, type Upstream } from "./upstream";

/**
 * The upstreams that may fill a local repository, in their configured order: those of the longest
 * namespace `name` is under (`dockerhub/library/alpine` is under `dockerhub`), else, for a name
 * under no namespace, the entries without one.
 *
 * @example
 * // hub's entry has "namespace": "dockerhub", ghcr's has none
 * upstreamsFor([hub, ghcr], "dockerhub/library/alpine"); // [hub]
 * upstreamsFor([hub, ghcr], "team/app"); // [ghcr]
 */
export function upstreamsFor(upstreams: readonly Upstream[], name: string): Upstream[] {
  let longest: string | undefined;
  for (const { config } of upstreams) {
    const ns = config.namespace;
    if (ns !== undefined && name.startsWith(`${ns}/`) && ns.length > (longest?.length ?? -1)) longest = ns;
  }
  return upstreams.filter((u) => u.config.namespace === longest);
}

/**
 * What the client hears when an upstream fails (anything but a 404): 504 `UNAVAILABLE` when it
 * did not answer in time, 429 `TOOMANYREQUESTS` when it asked to slow down, else 502
 * `UNAVAILABLE`. The message names the upstream as configured (a URL without credentials) and
 * what failed; the registry's log has the same.
 *
 * @example
 * throw upstreamFailure(upstream, "GET manifest library/alpine:3.20", error);
 */
export function upstreamFailure(upstream: Upstream, what: string, error: unknown): RegistryError {
  const reason = error instanceof Error ? error.message : String(error);
  const detail = { upstream: upstream.config.registry };
  const failed = `upstream ${upstream.config.registry} failed (${what})`;
  if (error instanceof UpstreamTimeout) {
    return new RegistryError("UNAVAILABLE", `${failed}: ${reason}; try again later`, { status: 504, detail });
  }
  if (error instanceof UpstreamStatus && error.status === 429) {
    return new RegistryError("TOOMANYREQUESTS", `${failed}: it answered 429 (too many requests); try again later`, {
      detail,
      ...(error.retryAfter ? { headers: { "Retry-After": error.retryAfter } } : {}),
    });
  }
  return new RegistryError("UNAVAILABLE", `${failed}: ${reason}`, { status: 502, detail });
}
