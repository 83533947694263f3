import { z } from "zod";
import type { Env } from "../env";
import { parseImmutableTags, type ImmutableTags } from "./immutable";
import { parseRetention, type RetentionRule } from "./retention";

/** How much one invocation of a retention run may do. */
export interface RetentionLimits {
  /** Repositories (that a rule names) judged per invocation (`RETENTION_MAX_REPOSITORIES`). */
  repositories: number;
  /** Tags removed (or, in a dry run, listed for removal) per invocation (`RETENTION_MAX_TAGS`). */
  tags: number;
}

/** Tag policies: `IMMUTABLE_TAGS`, `RETENTION_JSON` and the retention budget. */
export interface PolicyConfig {
  immutable: ImmutableTags;
  retention: RetentionRule[];
  limits: RetentionLimits;
}

/**
 * Defaults of the retention budget: about 2 R2 calls per repository and 3 per tag removed, so
 * about 1,600 calls, which with the garbage collection that follows in a cron run
 * (`GC_MAX_OPERATIONS`, 8,000) stays within Workers Paid's 10,000 subrequests per invocation.
 * Workers Free (50) needs a few of each (see README).
 */
export const DEFAULT_RETENTION_LIMITS: RetentionLimits = { repositories: 50, tags: 500 };

/**
 * Parses the tag policies. Never throws: bad rules are reported in `warnings` and left out, a bad
 * limit falls back to its default.
 *
 * @example
 * const policy = parsePolicies({ IMMUTABLE_TAGS: "*:v*", RETENTION_JSON: '[{"repositories":["ci/*"],"keep":{"most_recent":5}}]' }, []);
 * policy.retention.length; // 1
 */
export function parsePolicies(env: Env, warnings: string[]): PolicyConfig {
  const limit = (variable: string, fallback: number): number => {
    const raw = env[variable];
    if (raw === undefined || raw === "") return fallback;
    const parsed = z.coerce.number().int().positive().safeParse(raw);
    if (parsed.success) return parsed.data;
    warnings.push(`${variable} must be a positive whole number, got ${JSON.stringify(raw)}; using ${fallback}`);
    return fallback;
  };
  return {
    immutable: parseImmutableTags(env.IMMUTABLE_TAGS, warnings),
    retention: parseRetention(env.RETENTION_JSON, warnings),
    limits: {
      repositories: limit("RETENTION_MAX_REPOSITORIES", DEFAULT_RETENTION_LIMITS.repositories),
      tags: limit("RETENTION_MAX_TAGS", DEFAULT_RETENTION_LIMITS.tags),
    },
  };
}
