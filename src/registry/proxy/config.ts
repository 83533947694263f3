import type { Env } from "../../env";
import { isName } from "../../oci/names";
import { DEFAULT_COPY_MAX_SIZE, MAX_COPY_SIZE } from "./copy";
import { DEFAULT_UPSTREAM_TIMEOUT_MS, type UpstreamConfig } from "./upstream";

/**
 * Pull-through settings parsed from `REGISTRIES_JSON`, `REGISTRIES_TAG_TTL`, `REGISTRIES_TIMEOUT`,
 * `REGISTRIES_COPY_MAX_SIZE`.
 */
export interface PullThroughConfig {
  /** Usable upstreams, in the order they are tried. */
  upstreams: UpstreamConfig[];
  /** Seconds after which a tag cached from an upstream is re-checked; `undefined`: never. */
  tagTtl: number | undefined;
  /** Bound on waiting for an upstream's response headers, in milliseconds. */
  timeoutMs: number;
  /** Largest blob a pull copies into R2 (`REGISTRIES_COPY_MAX_SIZE`), when set. */
  copyMaxSize?: number;
}

const DOCKER_HUB_HOSTS = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

function nonNegativeSeconds(value: unknown): number | undefined {
  const n = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Validates one entry; returns the upstream or a reason it is unusable. */
function parseEntry(entry: unknown, env: Env, warnings: string[], where: string): UpstreamConfig | string {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return "must be an object";
  const e = entry as Record<string, unknown>;
  if (typeof e.registry !== "string" || e.registry.trim() === "") return `"registry" must be a URL string`;
  const raw = e.registry.trim();
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `https://${raw}`);
  } catch {
    return `"registry" ${JSON.stringify(raw)} is not a URL`;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return `"registry" must be an http(s) URL, got ${url.protocol}`;
  if (url.search || url.hash || url.username || url.password) return `"registry" must not have a query, fragment or credentials`;
  const dockerHub = DOCKER_HUB_HOSTS.has(url.hostname.toLowerCase());
  const origin = dockerHub ? "https://registry-1.docker.io" : url.origin;
  // `https://host/v2/prefix`, `https://host/prefix` and `https://host/` are all accepted.
  let prefix = url.pathname.replace(/^\/+|\/+$/g, "");
  if (prefix === "v2") prefix = "";
  else if (prefix.startsWith("v2/")) prefix = prefix.slice(3);
  const upstream: UpstreamConfig = { registry: raw, origin, prefix, dockerHub };

  if (e.username !== undefined) {
    if (typeof e.username !== "string" || e.username === "") return `"username" must be a non-empty string`;
    if (typeof e.password_env !== "string" || e.password_env === "") {
      return `has a "username" but no "password_env" (the name of the secret holding the password)`;
    }
    const password = env[e.password_env];
    if (typeof password !== "string" || password === "") {
      return `"password_env" names ${JSON.stringify(e.password_env)}, which is not set (add it as a secret)`;
    }
    upstream.username = e.username;
    upstream.password = password;
  } else if (e.password_env !== undefined) {
    warnings.push(`REGISTRIES_JSON${where}: "password_env" without "username" is ignored; the entry is anonymous`);
  }
  if (e.namespace !== undefined) {
    const namespace = typeof e.namespace === "string" ? e.namespace.trim().replace(/^\/+|\/+$/g, "") : "";
    if (!isName(namespace)) {
      return `"namespace" must be a repository name prefix such as "dockerhub" or "mirrors/ghcr" (lowercase letters, digits, . _ - and /), got ${JSON.stringify(e.namespace)}`;
    }
    upstream.namespace = namespace;
  }
  if (e.fill_local !== undefined) {
    if (typeof e.fill_local !== "boolean") return `"fill_local" must be true or false, got ${JSON.stringify(e.fill_local)}`;
    if (e.fill_local) upstream.fillLocal = true;
  }
  if (e.tag_ttl !== undefined) {
    const ttl = nonNegativeSeconds(e.tag_ttl);
    if (ttl === undefined) warnings.push(`REGISTRIES_JSON${where}: "tag_ttl" must be a number of seconds ≥ 0; ignored`);
    else upstream.tagTtl = ttl;
  }
  return upstream;
}

/**
 * Parses the pull-through settings. Never throws: a bad entry is reported in `warnings` (one line
 * each) and left out, and the others still work.
 *
 * @example
 * parseRegistries({ REGISTRIES_JSON: '[{"registry":"https://index.docker.io/"}]' }, []).upstreams[0]?.origin;
 * // "https://registry-1.docker.io"
 */
export function parseRegistries(env: Env, warnings: string[]): PullThroughConfig {
  const upstreams: UpstreamConfig[] = [];
  const raw = typeof env.REGISTRIES_JSON === "string" ? env.REGISTRIES_JSON.trim() : "";
  if (raw !== "") {
    let list: unknown;
    try {
      list = JSON.parse(raw);
    } catch (error) {
      warnings.push(`REGISTRIES_JSON is not valid JSON (${(error as Error).message}); pull-through is disabled`);
    }
    if (list !== undefined && !Array.isArray(list)) {
      warnings.push("REGISTRIES_JSON must be a JSON array of {registry, username?, password_env?, namespace?, fill_local?, tag_ttl?}; pull-through is disabled");
    } else if (Array.isArray(list)) {
      list.forEach((entry, index) => {
        const label = typeof (entry as { registry?: unknown })?.registry === "string" ? ` (${(entry as { registry: string }).registry})` : "";
        const where = `[${index}]${label}`;
        const result = parseEntry(entry, env, warnings, where);
        if (typeof result === "string") warnings.push(`REGISTRIES_JSON${where} ${result}; this upstream is skipped`);
        else upstreams.push(result);
      });
    }
  }

  let tagTtl: number | undefined;
  if (env.REGISTRIES_TAG_TTL !== undefined && env.REGISTRIES_TAG_TTL !== "") {
    tagTtl = nonNegativeSeconds(env.REGISTRIES_TAG_TTL);
    if (tagTtl === undefined) warnings.push(`REGISTRIES_TAG_TTL must be a number of seconds ≥ 0; cached tags are kept for good`);
  }
  let timeoutMs = DEFAULT_UPSTREAM_TIMEOUT_MS;
  if (env.REGISTRIES_TIMEOUT !== undefined && env.REGISTRIES_TIMEOUT !== "") {
    const seconds = nonNegativeSeconds(env.REGISTRIES_TIMEOUT);
    if (seconds === undefined || seconds === 0) warnings.push(`REGISTRIES_TIMEOUT must be a positive number of seconds; using ${DEFAULT_UPSTREAM_TIMEOUT_MS / 1000}`);
    else timeoutMs = seconds * 1000;
  }
  let copyMaxSize: number | undefined;
  if (env.REGISTRIES_COPY_MAX_SIZE !== undefined && env.REGISTRIES_COPY_MAX_SIZE !== "") {
    const raw = String(env.REGISTRIES_COPY_MAX_SIZE).trim();
    const bytes = /^\d{1,16}$/.test(raw) ? Number(raw) : NaN;
    if (Number.isNaN(bytes)) {
      warnings.push(`REGISTRIES_COPY_MAX_SIZE must be a whole number of bytes, got ${JSON.stringify(raw)}; using ${DEFAULT_COPY_MAX_SIZE}`);
    } else if (bytes > MAX_COPY_SIZE) {
      warnings.push(`REGISTRIES_COPY_MAX_SIZE of ${bytes} bytes is more than one R2 write takes; using ${MAX_COPY_SIZE}`);
      copyMaxSize = MAX_COPY_SIZE;
    } else copyMaxSize = bytes;
  }
  return { upstreams, tagTtl, timeoutMs, ...(copyMaxSize !== undefined ? { copyMaxSize } : {}) };
}
