import type { Config } from "../config";
import type { Registry } from "../registry/registry";
import { ImmutableRegistry } from "./guard";

/**
 * The registry with the tag policies enforced: wrapped in {@link ImmutableRegistry} when
 * `IMMUTABLE_TAGS` has rules, else as is. Wrap it over pull-through (whose caching is then never
 * refused) and under notifications (which then never tell of a refused write).
 *
 * @example
 * registry = withPolicies(new ProxyRegistry(new R2Registry(bucket), upstreams, options), config);
 */
export function withPolicies(registry: Registry, config: Config): Registry {
  return config.policy.immutable.empty ? registry : new ImmutableRegistry(registry, config.policy.immutable);
}
