/**
 * Media types, descriptors and digests: the vocabulary every other file of the push tool shares,
 * plus streaming SHA-256 helpers (a file range is hashed without ever being held in memory).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

export const MediaTypes = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/** Media types of manifests that list other manifests. */
export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaTypes.ociIndex, MediaTypes.dockerManifestList]);
/** Media types of image manifests. */
export const MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaTypes.ociManifest, MediaTypes.dockerManifest]);

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  platform?: Platform;
  annotations?: Record<string, string>;
}

/** The parts of an image manifest or index the tool reads. */
export interface ManifestJson {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  annotations?: Record<string, string>;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function isSha256Digest(value: string): boolean {
  return DIGEST.test(value);
}

/** `sha256:<hex>` of some bytes. */
export function sha256Of(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** `sha256:<hex>` of `length` bytes of a file from `offset`, streamed. */
export async function sha256OfFileRange(path: string, offset: number, length: number): Promise<string> {
  const hash = createHash("sha256");
  if (length > 0) {
    for await (const chunk of createReadStream(path, { start: offset, end: offset + length - 1, highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
    }
  }
  return `sha256:${hash.digest("hex")}`;
}

/** "sha256:0123456789ab" (the short form used in messages). */
export function shortDigest(digest: string): string {
  return digest.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]*$/, "$1");
}

/** "linux/arm64/v8". */
export function platformString(p: Platform | undefined): string {
  if (!p) return "unknown";
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** Parses JSON, naming what it was in the error. */
export function parseJson<T>(text: string | Buffer, what: string): T {
  try {
    return JSON.parse(typeof text === "string" ? text : text.toString("utf8")) as T;
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The media type of a manifest: its own `mediaType` field, else the one its descriptor gave, else guessed. */
export function manifestMediaType(manifest: ManifestJson, fromDescriptor?: string): string {
  if (manifest.mediaType) return manifest.mediaType;
  if (fromDescriptor) return fromDescriptor;
  return manifest.manifests ? MediaTypes.ociIndex : MediaTypes.ociManifest;
}

/** "1.2 GiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}
