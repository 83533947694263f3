import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import type { Env } from "../../src/env";

/** Origin every test request goes to. */
export const ORIGIN = "https://registry.test";

/** Basic credentials of the test environment (see test/wrangler.test.toml). */
export const RW = basic("hello", "world");
export const RO = basic("reader", "pull-only");

/** An `Authorization: Basic` value. */
export function basic(user: string, pass: string): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

export interface CallOptions extends RequestInit {
  /** Authorization header; the read-write user by default, `null` for none. */
  auth?: string | null;
  /** Environment overrides (e.g. other credentials). */
  env?: Partial<Env>;
}

/**
 * Sends a request to the Worker, as a client would, and waits for its background work.
 *
 * @example
 * const res = await call("/v2/");
 */
export async function call(path: string, options: CallOptions = {}): Promise<Response> {
  const { auth = RW, env: overrides, ...init } = options;
  const headers = new Headers(init.headers);
  if (auth !== null && !headers.has("Authorization")) headers.set("Authorization", auth);
  // As clients over HTTP do: a body of known length says so (a stream body goes chunked).
  const body = init.body;
  if ((typeof body === "string" || body instanceof Uint8Array || body instanceof ArrayBuffer) && !headers.has("Content-Length")) {
    headers.set("Content-Length", String(typeof body === "string" ? new TextEncoder().encode(body).byteLength : body.byteLength));
  }
  const request = new Request(`${ORIGIN}${path}`, { ...init, headers });
  const ctx = createExecutionContext();
  const response = await worker.fetch(request, { ...env, ...overrides } as Env, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

/** SHA-256 digest string of bytes or text. */
export async function sha256(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return `sha256:${[...hash].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Deterministic pseudo-random bytes. */
export function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Uploads a blob monolithically (POST then PUT with the body); returns its digest. */
export async function pushBlob(name: string, data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await sha256(bytes);
  const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  if (start.status !== 202) throw new Error(`POST upload: ${start.status} ${await start.text()}`);
  const location = start.headers.get("Location")!;
  const put = await call(`${location}${location.includes("?") ? "&" : "?"}digest=${digest}`, { method: "PUT", body: bytes });
  if (put.status !== 201) throw new Error(`PUT upload: ${put.status} ${await put.text()}`);
  return digest;
}

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

/** Pushes a config and one layer, and returns an OCI image manifest (text) referencing them. */
export async function imageManifest(name: string, seed = 1): Promise<{ text: string; digest: string; blobs: string[] }> {
  const config = JSON.stringify({ architecture: "amd64", os: "linux", seed });
  const layer = bytesOf(1000, seed);
  const configDigest = await pushBlob(name, config);
  const layerDigest = await pushBlob(name, layer);
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: new TextEncoder().encode(config).byteLength },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layerDigest, size: layer.byteLength }],
  });
  return { text, digest: await sha256(text), blobs: [configDigest, layerDigest] };
}

/** PUTs a manifest and returns the response. */
export function putManifest(name: string, reference: string, text: string, contentType = OCI_MANIFEST): Promise<Response> {
  return call(`/v2/${name}/manifests/${reference}`, { method: "PUT", body: text, headers: { "Content-Type": contentType } });
}

/** The OCI empty descriptor (`{}`, embedded as `data`), the config of an artifact manifest. */
export const EMPTY_CONFIG = {
  mediaType: "application/vnd.oci.empty.v1+json",
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
  data: "e30=",
};

/**
 * An artifact manifest (OCI 1.1 style: `artifactType`, empty config) whose subject is `subject`.
 *
 * @example
 * const sig = artifactManifest({ digest, size }, "application/vnd.example.sig");
 * await putManifest(name, await sha256(sig), sig);
 */
export function artifactManifest(
  subject: { digest: string; size: number; mediaType?: string },
  artifactType: string,
  layers: object[] = [],
  annotations?: Record<string, string>,
): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: EMPTY_CONFIG,
    layers,
    subject: { mediaType: subject.mediaType ?? OCI_MANIFEST, digest: subject.digest, size: subject.size },
    ...(annotations ? { annotations } : {}),
  });
}

/** Error code of an OCI error body. */
export async function errorCode(response: Response): Promise<string | undefined> {
  const body = (await response.json()) as { errors?: { code: string }[] };
  return body.errors?.[0]?.code;
}

/** Docker manifest media types. */
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

let counter = 0;

/**
 * A repository name no other test uses (storage is shared between the tests of one file).
 *
 * @example
 * const name = uniqueName("blobs"); // "blobs/t3-k9x2a"
 */
export function uniqueName(prefix = "repo"): string {
  counter += 1;
  return `${prefix}/t${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Deletes every key in the bucket. */
export async function clearBucket(): Promise<void> {
  for (;;) {
    const page = await env.REGISTRY.list({ limit: 1000 });
    if (page.objects.length === 0) return;
    await env.REGISTRY.delete(page.objects.map((o) => o.key));
  }
}

/** Every key in the bucket under a prefix. */
export async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.REGISTRY.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
    out.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return out;
}

/** Opens an upload session in a repository; returns its Location (a path) and the response. */
export async function startUpload(name: string): Promise<{ location: string; response: Response }> {
  const response = await call(`/v2/${name}/blobs/uploads/`, { method: "POST" });
  if (response.status !== 202) throw new Error(`POST upload: ${response.status} ${await response.text()}`);
  return { location: response.headers.get("Location")!, response };
}

/** Adds query parameters to a path that may already have some. */
export function withQuery(path: string, params: Record<string, string>): string {
  const query = new URLSearchParams(params).toString();
  return `${path}${path.includes("?") ? "&" : "?"}${query}`;
}

/** The parsed OCI error body of a response. */
export interface ErrorBody {
  errors: { code: string; message: string; detail: unknown }[];
}

/** Reads a response body fully as bytes. */
export async function bodyBytes(response: Response): Promise<Uint8Array> {
  return new Uint8Array(await response.arrayBuffer());
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

/** Hex of a `sha256:<hex>` digest (for R2's `sha256` put option). */
export function hexOf(digest: string): string {
  return digest.slice(digest.indexOf(":") + 1);
}
