import type { QueuedEnvelope } from "./events/queue";

/** The bindings and variables the Worker receives (names kept from serverless-registry). */
export interface Env {
  /** The R2 bucket that holds everything. */
  REGISTRY?: R2Bucket;
  /** Read-write Basic credentials. */
  USERNAME?: string;
  PASSWORD?: string;
  /** Pull-only Basic credentials. */
  READONLY_USERNAME?: string;
  READONLY_PASSWORD?: string;
  /** Base64 of a public JSON Web Key verifying tokens passed as the Basic password. */
  JWT_REGISTRY_TOKENS_PUBLIC_KEY?: string;
  /** The `aud` a JWT must name (optional; any when unset). */
  JWT_AUDIENCE?: string;
  /** The `iss` a JWT must have (optional; any when unset). */
  JWT_ISSUER?: string;
  /** Secret the tokens of `/token` are signed with (optional; else derived from the credentials). */
  TOKEN_SECRET?: string;
  /** Failed Basic logins per client address and minute before 429s (default 10; 0: no limit). */
  LOGIN_FAILURE_LIMIT?: string;
  /** `true` makes pulls public (pushes and deletes still need credentials). */
  ANONYMOUS_PULL?: string;
  /** Comma-separated browser origins allowed by CORS, or `*`. */
  CORS_ORIGINS?: string;
  /** JSON array of upstream registries for pull-through. */
  REGISTRIES_JSON?: string;
  /** Seconds after which a tag cached from an upstream is checked again (default: never). */
  REGISTRIES_TAG_TTL?: string;
  /** Seconds to wait for an upstream's response headers (default 10). */
  REGISTRIES_TIMEOUT?: string;
  /** Largest blob a pull-through copies into R2, in bytes (default and most: 4.99 GiB, one R2 put). */
  REGISTRIES_COPY_MAX_SIZE?: string;
  /** `full` or `none`: kept for compatibility; every chunk shape is accepted either way. */
  PUSH_COMPATIBILITY_MODE?: string;
  /** Largest PATCH body the deployment accepts, in bytes (advertised as OCI-Chunk-Max-Length). */
  MAX_CHUNK_SIZE?: string;
  /** Size of the R2 multipart parts a body of unknown length is cut into, in bytes: 5 MiB to 32 MiB (default 8 MiB). */
  UPLOAD_PART_SIZE?: string;
  /** Mode of scheduled garbage collections: `unreferenced` (default) or `untagged`. */
  GC_MODE?: string;
  /** Seconds during which new manifests and blobs are never collected (default 3600). */
  GC_GRACE_PERIOD?: string;
  /** Seconds after which an untouched upload is abandoned and removed (default 86400, at most 7 days). */
  GC_UPLOAD_MAX_AGE?: string;
  /** R2 calls one invocation of a garbage collection (or a backfill) may make (default 8000). */
  GC_MAX_OPERATIONS?: string;
  /** Seconds one invocation of a garbage collection may take (default 30). */
  GC_MAX_SECONDS?: string;
  /** Seconds between the starts of two scheduled registry-wide collections (default 0). */
  GC_INTERVAL?: string;
  /** `true` logs the R2 operations (by pricing class) each request made. */
  LOG_R2_OPERATIONS?: string;
  /** `enforce` runs on a bucket that refuses what Cloudflare's R2 would (for tests and `pnpm dev`). */
  R2_LIMITS?: string;
  /** With `R2_LIMITS=enforce`: R2 calls allowed per invocation (default 10000; Workers Free: 50). */
  R2_SUBREQUEST_LIMIT?: string;
  /** JSON array of endpoints told about pushes, pulls and deletes. */
  NOTIFICATIONS_JSON?: string;
  /** Queue carrying notifications to the consumer in this Worker (optional: else best effort). */
  NOTIFICATIONS_QUEUE?: Queue<QueuedEnvelope>;
  /** Comma-separated `<repository pattern>:<tag pattern>` rules of tags that never move (e.g. `*:v*`). */
  IMMUTABLE_TAGS?: string;
  /** JSON array of retention rules: which tags stay, the others are removed by retention runs. */
  RETENTION_JSON?: string;
  /** Repositories a retention run judges per invocation (default 50). */
  RETENTION_MAX_REPOSITORIES?: string;
  /** Tags a retention run removes per invocation (default 500). */
  RETENTION_MAX_TAGS?: string;
  [secret: string]: unknown;
}
