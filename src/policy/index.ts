import type { Config } from "../config";
import type { Registry } from "../registry/registry";
import { ImmutableRegistry } from "./guard";

/**
 * The registry with the tag policies enforced: wrapped in {@link ImmutableRegistry} when
 * `IMMUTABLE_TAGS` has rules (outermost, so pull-through caching is never refused), else as is.
 *
 * @example
 * registry = withPolicies(new ProxyRegistry(new R2Registry(bucket), upstreams, options), config);
 */
export function withPolicies(registry: Registry, config: Config): Registry {
  return config.policy.immutable.empty ? registry : new ImmutableRegistry(registry, config.policy.immutable);
}
