/**
 * The web UI's client of the registry's own `/v2/` API. Every request goes to this page's origin
 * (anything else is refused before it is sent), with the signed-in user's `Authorization` header
 * from the tab's session storage, never the browser's saved login (`credentials: "omit"`, which
 * also keeps the browser from prompting for a password on a 401).
 */

/** Manifest media types the UI asks for. */
export const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/vnd.docker.distribution.manifest.v1+json",
];

/** Config media types of container images (anything else is an artifact). */
const IMAGE_CONFIGS = ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/** What went wrong, in the words a person needs. */
export type ErrorKind = "unauthorized" | "denied" | "not-found" | "unreachable" | "busy" | "failed";

/** A refusal or failure of the registry, with its own message. */
export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly status = 0,
    readonly code = "",
  ) {
    super(message);
  }
}

/** Who is signed in: the `Authorization` header sent with every request, and a name to show. */
export interface Login {
  authorization: string;
  user: string;
}

const LOGIN_KEY = "r2-registry-ui.login";

/** The signed-in user of this tab, if any (session storage: gone when the tab closes). */
export function currentLogin(): Login | undefined {
  try {
    const value = JSON.parse(sessionStorage.getItem(LOGIN_KEY) ?? "null") as Partial<Login> | null;
    if (value && typeof value.authorization === "string" && typeof value.user === "string") return value as Login;
  } catch {
    // Nothing usable stored.
  }
  return undefined;
}

/** Stores (or, without a login, forgets) the tab's credentials. */
export function storeLogin(login: Login | undefined): void {
  if (login) sessionStorage.setItem(LOGIN_KEY, JSON.stringify(login));
  else sessionStorage.removeItem(LOGIN_KEY);
}

/** The `Authorization` header for a username and password. */
export function basicHeader(user: string, password: string): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

interface RequestOptions {
  method?: string;
  accept?: string;
  signal?: AbortSignal | undefined;
  /** Credentials to use instead of the stored ones (`null`: none). */
  login?: Login | null;
}

/**
 * Sends a request to the registry's `/v2/` API on this page's origin and answers the response,
 * or throws an {@link ApiError} with the registry's message.
 */
export async function request(path: string, options: RequestOptions = {}): Promise<Response> {
  const url = new URL(path, location.origin);
  if (url.origin !== location.origin || !url.pathname.startsWith("/v2/")) {
    throw new ApiError("failed", `not sending credentials to ${url.href}: the UI talks only to this registry's /v2/ API`);
  }
  const headers = new Headers();
  if (options.accept) headers.set("Accept", options.accept);
  const login = options.login === undefined ? currentLogin() : options.login;
  if (login) headers.set("Authorization", login.authorization);
  let response: Response;
  try {
    response = await fetch(url, {
      method: options.method ?? "GET",
      headers,
      credentials: "omit",
      cache: "no-store",
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    throw new ApiError("unreachable", "The registry did not answer. Check the network connection and try again.");
  }
  if (response.ok) return response;
  throw await failure(response);
}

async function failure(response: Response): Promise<ApiError> {
  let message = "";
  let code = "";
  try {
    const body = (await response.json()) as { errors?: { code?: string; message?: string }[] };
    message = body.errors?.[0]?.message ?? "";
    code = body.errors?.[0]?.code ?? "";
  } catch {
    // Not the spec's error body.
  }
  const status = response.status;
  const kind: ErrorKind =
    status === 401 ? "unauthorized" : status === 403 ? "denied" : status === 404 ? "not-found" : status === 429 || status === 503 ? "busy" : "failed";
  return new ApiError(kind, message || `${status} ${response.statusText}`.trim(), status, code);
}

/** One page of a listing, and the `last` to ask for the next one (when the registry says there is one). */
export interface Page {
  items: string[];
  next?: string;
}

/** The `last` of the `Link: <…>; rel="next"` header, if any. */
function nextLast(response: Response): string | undefined {
  const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(response.headers.get("Link") ?? "");
  if (!match?.[1]) return undefined;
  return new URL(match[1], location.origin).searchParams.get("last") ?? undefined;
}

function pageQuery(n: number, last: string | undefined): string {
  const query = new URLSearchParams({ n: String(n) });
  if (last) query.set("last", last);
  return query.toString();
}

/** A page of `GET /v2/_catalog`. */
export async function catalog(n: number, last: string | undefined, signal?: AbortSignal): Promise<Page> {
  const response = await request(`/v2/_catalog?${pageQuery(n, last)}`, { signal });
  const body = (await response.json()) as { repositories?: string[] | null };
  const next = nextLast(response);
  return { items: body.repositories ?? [], ...(next ? { next } : {}) };
}

/** A page of `GET /v2/<name>/tags/list`. */
export async function tags(name: string, n: number, last: string | undefined, signal?: AbortSignal): Promise<Page> {
  const response = await request(`/v2/${name}/tags/list?${pageQuery(n, last)}`, { signal });
  const body = (await response.json()) as { tags?: string[] | null };
  const next = nextLast(response);
  return { items: body.tags ?? [], ...(next ? { next } : {}) };
}

/** Every tag of a repository, up to `cap` (`more` when there were more). */
export async function allTags(name: string, signal?: AbortSignal, cap = 5000): Promise<{ tags: string[]; more: boolean }> {
  const found: string[] = [];
  let last: string | undefined;
  while (found.length < cap) {
    const page = await tags(name, 1000, last, signal);
    found.push(...page.items);
    if (!page.next) return { tags: found, more: false };
    last = page.next;
  }
  return { tags: found.slice(0, cap), more: true };
}

export interface Platform {
  architecture?: string;
  os?: string;
  variant?: string;
  "os.version"?: string;
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: Platform;
  artifactType?: string;
  annotations?: Record<string, string>;
  urls?: string[];
}

/** The fields of an image manifest, an index or an artifact the UI shows. */
export interface ManifestBody {
  schemaVersion?: number;
  mediaType?: string;
  artifactType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
  fsLayers?: { blobSum: string }[];
}

/** A manifest as the registry answered it. */
export interface Manifest {
  digest: string;
  mediaType: string;
  size: number;
  /** `Last-Modified`: when it was stored under the reference asked for (for a tag: pushed). */
  modified?: Date;
  body: ManifestBody;
  text: string;
}

export type ManifestKind = "index" | "image" | "artifact" | "schema1";

/** Whether a manifest is an index, an image, an artifact (signature, SBOM…) or Docker schema 1. */
export function kindOf(body: ManifestBody): ManifestKind {
  if (Array.isArray(body.manifests)) return "index";
  if (body.schemaVersion === 1) return "schema1";
  if (body.artifactType || (body.config?.mediaType && !IMAGE_CONFIGS.includes(body.config.mediaType))) return "artifact";
  return "image";
}

/** `GET /v2/<name>/manifests/<reference>` with every manifest type accepted. */
export async function manifest(name: string, reference: string, signal?: AbortSignal): Promise<Manifest> {
  const response = await request(`/v2/${name}/manifests/${reference}`, { accept: MANIFEST_TYPES.join(", "), signal });
  const text = await response.text();
  let body: ManifestBody;
  try {
    body = JSON.parse(text) as ManifestBody;
  } catch {
    throw new ApiError("failed", `the manifest ${reference} is not JSON`);
  }
  const modified = response.headers.get("Last-Modified");
  const digest = response.headers.get("Docker-Content-Digest") ?? (reference.includes(":") ? reference : "");
  return {
    digest,
    mediaType: (response.headers.get("Content-Type") ?? body.mediaType ?? "").split(";")[0]!.trim(),
    size: new TextEncoder().encode(text).byteLength,
    ...(modified ? { modified: new Date(modified) } : {}),
    body,
    text,
  };
}

/** The digest a tag points at (`HEAD` of the manifest). */
export async function digestOf(name: string, reference: string, signal?: AbortSignal): Promise<string | undefined> {
  const response = await request(`/v2/${name}/manifests/${reference}`, { method: "HEAD", accept: MANIFEST_TYPES.join(", "), signal });
  return response.headers.get("Docker-Content-Digest") ?? undefined;
}

/** An image's configuration (the fields the UI shows). */
export interface ImageConfig {
  created?: string;
  architecture?: string;
  os?: string;
  variant?: string;
  author?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
  } | null;
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
}

/** A small JSON blob (an image config), refused above 1 MiB. */
export async function configOf(name: string, descriptor: Descriptor, signal?: AbortSignal): Promise<ImageConfig> {
  if (descriptor.size > 1 << 20) throw new ApiError("failed", `the config is ${descriptor.size} bytes; not shown`);
  const response = await request(`/v2/${name}/blobs/${descriptor.digest}`, { signal });
  return (await response.json()) as ImageConfig;
}

/** `GET /v2/<name>/referrers/<digest>`, every page (up to 10). */
export async function referrers(name: string, digest: string, signal?: AbortSignal): Promise<Descriptor[]> {
  const found: Descriptor[] = [];
  let path: string | undefined = `/v2/${name}/referrers/${digest}`;
  for (let i = 0; path && i < 10; i++) {
    const response: Response = await request(path, { accept: "application/vnd.oci.image.index.v1+json", signal });
    found.push(...(((await response.json()) as ManifestBody).manifests ?? []));
    const link = /<([^>]*)>\s*;\s*rel="?next"?/.exec(response.headers.get("Link") ?? "")?.[1];
    path = link;
  }
  return found;
}

/** `DELETE /v2/<name>/manifests/<tag or digest>`. */
export async function deleteManifest(name: string, reference: string): Promise<void> {
  await request(`/v2/${name}/manifests/${reference}`, { method: "DELETE" });
}

/** What a garbage collection deleted (or, in a dry run, would delete). */
export interface CollectReport {
  mode: string;
  dryRun: boolean;
  manifests: { digest: string; size: number; tags: string[] }[];
  blobs: { digest: string; size: number; kind: string }[];
  shared?: { digest: string; size: number }[];
  bytes: number;
}

/**
 * `POST /v2/<name>/gc?mode=…` with `dry_run=true`, or a real run with `report=true` (so the
 * answer says what it freed). `grace` (seconds) overrides the registry's grace period.
 */
export async function collect(name: string, mode: string, dryRun: boolean, grace?: number): Promise<CollectReport> {
  const query = new URLSearchParams({ mode, [dryRun ? "dry_run" : "report"]: "true" });
  if (grace !== undefined) query.set("grace", String(grace));
  const response = await request(`/v2/${name}/gc?${query.toString()}`, { method: "POST" });
  return (await response.json()) as CollectReport;
}

/** Whether the signed-in principal may change a repository, and if not, why. */
export interface Rights {
  push: boolean;
  why: string;
}

/**
 * Whether the principal may push to (and so delete from) a repository, found without changing
 * anything: `DELETE` of a reference that can never be a tag (`-ui-probe`). The registry checks
 * push rights first: 401 (signed out, or anonymous) and 403 (read-only) say no; anything else
 * (404: there is no such manifest, nothing read or deleted) says yes.
 */
export async function rightsOn(name: string, signal?: AbortSignal): Promise<Rights> {
  try {
    await request(`/v2/${name}/manifests/-ui-probe`, { method: "DELETE", signal });
    return { push: true, why: "" };
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.kind === "not-found") return { push: true, why: "" };
    if (error.kind === "unauthorized") return { push: false, why: "Sign in with push rights to delete tags and manifests or collect garbage." };
    if (error.kind === "denied") return { push: false, why: `Read-only: ${error.message}.` };
    return { push: false, why: error.message };
  }
}
