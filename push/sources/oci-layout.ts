/**
 * OCI image layouts, in a directory or inside a tar: picks the manifest or index a reference names
 * in `index.json`, then walks it (an index's every child manifest, each manifest's config and
 * layers) into a push plan. Manifests are checked against their digests as they are read; blobs
 * are checked while they upload.
 */
import { bufferBlob, BlobSet, type BlobSource, type ManifestToPush, type PushPlan } from "../image.ts";
import {
  INDEX_TYPES,
  manifestMediaType,
  parseJson,
  platformString,
  sha256Of,
  shortDigest,
  type Descriptor,
  type ManifestJson,
  type Platform,
} from "../media.ts";
import type { BlobStore } from "./store.ts";

export const REF_NAME = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME = "io.containerd.image.name";

/** A blob (or child manifest) the layout references but does not hold. */
export class MissingBlobError extends Error {
  readonly digest: string;
  constructor(store: BlobStore, digest: string, what: string) {
    super(`${store.description} does not hold ${what} ${digest}`);
    this.name = "MissingBlobError";
    this.digest = digest;
  }
}

export interface WalkOptions {
  /** From an index, push only the manifest for this platform ("linux/arm64/v8"). */
  platform?: string;
}

/** Every name a descriptor of index.json answers to. */
function namesOf(d: Descriptor): string[] {
  const names: string[] = [];
  const ref = d.annotations?.[REF_NAME];
  const full = d.annotations?.[CONTAINERD_NAME];
  if (ref) names.push(ref);
  if (full) {
    names.push(full);
    // docker.io/library/alpine:3 is also alpine:3 and library/alpine:3.
    const short = full.replace(/^docker\.io\//, "");
    names.push(short, short.replace(/^library\//, ""));
  }
  return names;
}

/** Picks the descriptor `ref` names in an index.json (by tag, full name or digest); with no ref, the only one. */
export function selectRoot(index: ManifestJson, ref: string | undefined, where: string): Descriptor {
  const all = index.manifests ?? [];
  if (all.length === 0) throw new Error(`${where}: index.json lists no images`);
  const listing = () =>
    all.map((d) => `  ${namesOf(d)[0] ?? "(untagged)"}  ${d.digest}${d.platform ? `  ${platformString(d.platform)}` : ""}`).join("\n");
  if (ref === undefined) {
    if (all.length === 1) return all[0]!;
    throw new Error(`${where} holds ${all.length} images; say which one (…:<tag>):\n${listing()}`);
  }
  const wanted = [ref, ref.includes(":") || ref.startsWith("sha256:") ? ref : `${ref}:latest`];
  const found = all.filter((d) => d.digest === ref || namesOf(d).some((n) => wanted.includes(n)));
  if (found.length === 0) throw new Error(`${where} has no image named ${JSON.stringify(ref)}; it holds:\n${listing()}`);
  const digests = new Set(found.map((d) => d.digest));
  if (digests.size > 1) throw new Error(`${where}: ${JSON.stringify(ref)} names several images:\n${listing()}`);
  return found[0]!;
}

export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split("/");
  if (!os || !architecture) throw new Error(`--platform must look like os/arch[/variant], e.g. linux/arm64/v8; got ${JSON.stringify(text)}`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  return !want.variant || want.variant === have.variant;
}

/** Reads a manifest or index from the store, checking its digest and size. */
export async function readManifest(store: BlobStore, d: Descriptor, what: string): Promise<{ bytes: Buffer; json: ManifestJson }> {
  if (store.blobSize(d.digest) === undefined) throw new MissingBlobError(store, d.digest, what);
  const bytes = await store.readBlob(d.digest);
  const actual = sha256Of(bytes);
  if (d.digest.startsWith("sha256:") && actual !== d.digest) {
    throw new Error(`${store.description}: ${what} ${d.digest} is corrupt (its content hashes to ${actual})`);
  }
  if (d.size !== undefined && d.size !== bytes.length) {
    throw new Error(`${store.description}: ${what} ${d.digest} has ${bytes.length} bytes, its descriptor says ${d.size}`);
  }
  return { bytes, json: parseJson<ManifestJson>(bytes, `${what} ${d.digest}`) };
}

function storeBlob(store: BlobStore, d: Descriptor, label: string): BlobSource {
  return {
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
    label,
    verify: true,
    open: (start, end) => store.openBlob(d.digest, start, end),
  };
}

/**
 * Walks the manifest or index `root` into a push plan (without cleanup, which the caller adds).
 * Throws MissingBlobError when something it references is not in the store.
 */
export async function walkLayout(
  store: BlobStore,
  root: Descriptor,
  opts: WalkOptions = {},
): Promise<Omit<PushPlan, "cleanup" | "description">> {
  const blobs = new BlobSet();
  const manifests: ManifestToPush[] = [];
  const notes: string[] = [];
  const pushed = new Set<string>();

  const visitImage = async (d: Descriptor, where: string, bytes: Buffer, m: ManifestJson) => {
    if (!m.config) throw new Error(`${store.description}: manifest ${d.digest} (${where}) has no config`);
    const parts: Array<[Descriptor, string]> = [[m.config, `config of ${where}`]];
    const layers = m.layers ?? [];
    layers.forEach((l, i) => parts.push([l, `layer ${i + 1}/${layers.length} of ${where}`]));
    for (const [desc, label] of parts) {
      const size = store.blobSize(desc.digest);
      if (size === undefined) {
        if (desc.urls?.length || /nondistributable|foreign/.test(desc.mediaType)) {
          notes.push(`${label} ${shortDigest(desc.digest)} is a foreign layer (${desc.urls?.[0] ?? desc.mediaType}); not uploaded`);
          continue;
        }
        throw new MissingBlobError(store, desc.digest, label);
      }
      if (size !== desc.size) throw new Error(`${store.description}: ${label} ${desc.digest} has ${size} bytes, the manifest says ${desc.size}`);
      // An empty JSON config ("{}") is small enough to keep in memory and check at once.
      if (size <= 4096) {
        const small = await store.readBlob(desc.digest);
        if (sha256Of(small) !== desc.digest) throw new Error(`${store.description}: ${label} ${desc.digest} is corrupt`);
        blobs.add(bufferBlob(small, desc.digest, desc.mediaType, label));
      } else blobs.add(storeBlob(store, desc, label));
    }
    if (!pushed.has(d.digest)) {
      pushed.add(d.digest);
      manifests.push({ digest: d.digest, mediaType: manifestMediaType(m, d.mediaType), bytes, label: `manifest of ${where}` });
    }
  };

  const visit = async (d: Descriptor, where: string, depth: number): Promise<void> => {
    if (depth > 4) throw new Error(`${store.description}: indexes nested too deep at ${d.digest}`);
    const { bytes, json } = await readManifest(store, d, depth === 0 ? "image" : `manifest for ${where}`);
    const type = manifestMediaType(json, d.mediaType);
    if (!INDEX_TYPES.has(type) && !json.manifests) return visitImage(d, where, bytes, json);
    const children = json.manifests ?? [];
    if (depth === 0 && opts.platform) {
      const want = parsePlatform(opts.platform);
      const child = children.find((c) => platformMatches(want, c.platform));
      if (!child) {
        throw new Error(
          `the index ${d.digest} has no manifest for ${opts.platform}; it has: ${children.map((c) => platformString(c.platform)).join(", ")}`,
        );
      }
      return visit(child, platformString(child.platform), depth + 1);
    }
    for (const c of children) {
      const name = c.platform ? platformString(c.platform) : c.annotations?.["vnd.docker.reference.type"] ?? shortDigest(c.digest);
      await visit(c, name, depth + 1);
    }
    if (!pushed.has(d.digest)) {
      pushed.add(d.digest);
      manifests.push({ digest: d.digest, mediaType: type, bytes, label: depth === 0 ? "index" : `index ${shortDigest(d.digest)}` });
    }
  };

  await visit(root, root.platform ? platformString(root.platform) : "the image", 0);
  // Small blobs first (they finish at once and show progress), then the biggest first.
  const list = blobs.list().sort((a, b) => (a.size <= 1 << 20 || b.size <= 1 << 20 ? a.size - b.size : b.size - a.size));
  return { blobs: list, manifests, notes };
}

/** Plans the push of what `ref` names in an OCI layout held by `store`. */
export async function planOciLayout(store: BlobStore, ref: string | undefined, opts: WalkOptions, cleanup: () => Promise<void>): Promise<PushPlan> {
  const layoutFile = await store.readFile("oci-layout");
  if (!layoutFile) throw new Error(`${store.description} is not an OCI image layout (no oci-layout file)`);
  const indexBytes = await store.readFile("index.json");
  if (!indexBytes) throw new Error(`${store.description} is not an OCI image layout (no index.json)`);
  const root = selectRoot(parseJson<ManifestJson>(indexBytes, `${store.description}: index.json`), ref, store.description);
  const walked = await walkLayout(store, root, opts);
  return { ...walked, description: `${store.description}${ref ? ` (${ref})` : ""}`, cleanup };
}
