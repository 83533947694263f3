import { env } from "cloudflare:test";
import { expect } from "vitest";
import { bytesOf, call, hexOf, OCI_MANIFEST, sha256, type CallOptions } from "./helpers";

/**
 * Fixtures for collections of many repositories, written straight into the test bucket (pushing
 * thousands of images through the Worker would take minutes), in this registry's layout or in
 * serverless-registry's.
 */

/** An image as stored: its manifest digest and blob digests. */
export interface Stored {
  name: string;
  digest: string;
  blobs: string[];
  tag?: string;
}

/** Stores a blob under its digest (R2 checks the bytes against it), as an upload does. */
export async function storeBlob(name: string, data: Uint8Array | string): Promise<string> {
  const digest = await sha256(data);
  await env.REGISTRY.put(`${name}/blobs/${digest}`, data, { sha256: hexOf(digest) });
  return digest;
}

/**
 * Stores an image (a config and a layer, `seed` making it unique) under its digest and, if given,
 * a tag. `original`: as serverless-registry wrote it (no digest metadata, no catalog marker).
 *
 * @example
 * const image = await storeImage("team/app", "v1", 7);
 */
export async function storeImage(name: string, tag: string | undefined, seed: number, options: { original?: boolean; blobs?: string[] } = {}): Promise<Stored> {
  const config = JSON.stringify({ architecture: "amd64", os: "linux", seed });
  const blobs = options.blobs ?? [await storeBlob(name, config), await storeBlob(name, bytesOf(300, seed))];
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: blobs[0], size: config.length },
    layers: blobs.slice(1).map((digest) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest, size: 300 })),
  });
  const digest = await sha256(text);
  const put: R2PutOptions = {
    httpMetadata: { contentType: OCI_MANIFEST },
    customMetadata: options.original ? { hasSubject: "false" } : { digest, hasSubject: "false" },
    sha256: hexOf(digest),
  };
  await env.REGISTRY.put(`${name}/manifests/${digest}`, text, put);
  if (tag) await env.REGISTRY.put(`${name}/manifests/${tag}`, text, put);
  if (!options.original) await env.REGISTRY.put(`_repositories/${name}`, "");
  return { name, digest, blobs, ...(tag ? { tag } : {}) };
}

/** Runs `fn` over `items`, `limit` at a time. */
export async function inParallel<T>(items: T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += limit) await Promise.all(items.slice(i, i + limit).map((item, j) => fn(item, i + j)));
}

/** Marks the bucket as one this registry has indexed already (its catalog and links backfills done). */
export async function indexed(): Promise<void> {
  await env.REGISTRY.put("_meta/catalog-backfilled", "test");
  await env.REGISTRY.put("_meta/links-v2-backfilled", "test");
}

/** The keys that exist among `keys`. */
export async function existing(keys: string[]): Promise<Set<string>> {
  const found = new Set<string>();
  await inParallel(keys, 50, async (key) => {
    if (await env.REGISTRY.head(key)) found.add(key);
  });
  return found;
}

/** Every key of a stored image: manifest (digest and tag) and blobs. */
export function keysOf(image: Stored): string[] {
  return [
    `${image.name}/manifests/${image.digest}`,
    ...(image.tag ? [`${image.name}/manifests/${image.tag}`] : []),
    ...image.blobs.map((blob) => `${image.name}/blobs/${blob}`),
  ];
}

/** The answer of a registry-wide collection. */
export interface RunAnswer {
  success: boolean;
  complete: boolean;
  next?: string;
  operations: number;
  progress: { repositories: number; failed: number; last?: string; uploads: string; orphans: string };
  repositories: { name: string; manifests: { digest: string }[]; blobs: { digest: string }[]; complete: boolean }[];
  failed: { name: string; error: string }[];
}

/**
 * Follows a registry-wide collection from `path` through its `Link` headers until it is
 * complete; answers every invocation's answer.
 *
 * @example
 * const answers = await runToEnd("/v2/_gc?grace=0&report=true", { env: { GC_MAX_OPERATIONS: "300" } });
 */
export async function runToEnd(path: string, options: CallOptions = {}, most = 500): Promise<RunAnswer[]> {
  const answers: RunAnswer[] = [];
  let next: string | undefined = path;
  while (next) {
    const res = await call(next, { method: "POST", ...options });
    expect(res.status, await res.clone().text()).toBe(200);
    const answer = (await res.json()) as RunAnswer;
    answers.push(answer);
    next = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "")?.[1];
    expect(next === undefined, "a Link exactly while not complete").toBe(answer.complete);
    expect(answers.length).toBeLessThan(most);
  }
  return answers;
}
