/**
 * What a source turns an image into before anything is sent: a push plan, i.e. the blobs to upload
 * (each able to stream any byte range of itself, from a file or a file region) and the manifests to
 * put afterwards, children before the index that lists them, the tagged root last.
 */
import { Readable } from "node:stream";
import { formatBytes, shortDigest } from "./media.ts";

export interface BlobSource {
  digest: string;
  size: number;
  mediaType: string;
  /** Human label: "layer 2/3 of linux/amd64", "config". */
  label: string;
  /** Streams bytes [start, end) of the blob. */
  open(start: number, end: number): Readable;
  /** Whether the digest is taken on trust (from a file name or a config) and must be checked while uploading. */
  verify: boolean;
}

export interface ManifestToPush {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  label: string;
}

export interface PushPlan {
  /** "OCI layout ./dir (tag v1)". */
  description: string;
  /** Every distinct blob, in a sensible order (configs first, big layers early). */
  blobs: BlobSource[];
  /** Manifests in the order they must be put; the last one is the root, which gets the tag. */
  manifests: ManifestToPush[];
  /** Things the user should know (e.g. a foreign layer that is not uploaded). */
  notes: string[];
  /** Removes temp files the source made. */
  cleanup(): Promise<void>;
}

/** A blob held in memory (generated manifests, configs). */
export function bufferBlob(bytes: Buffer, digest: string, mediaType: string, label: string): BlobSource {
  return {
    digest,
    size: bytes.length,
    mediaType,
    label,
    verify: false,
    open: (start, end) => Readable.from([bytes.subarray(start, end)]),
  };
}

/** Adds blobs to a list once per digest (the first label wins). */
export class BlobSet {
  private readonly byDigest = new Map<string, BlobSource>();

  add(blob: BlobSource): void {
    const known = this.byDigest.get(blob.digest);
    if (known && known.size !== blob.size) {
      throw new Error(`blob ${blob.digest} is listed with two sizes: ${known.size} and ${blob.size}`);
    }
    if (!known) this.byDigest.set(blob.digest, blob);
  }

  has(digest: string): boolean {
    return this.byDigest.has(digest);
  }

  list(): BlobSource[] {
    return [...this.byDigest.values()];
  }
}

/** "3 blobs (120.1 MiB), 3 manifests". */
export function summarizePlan(plan: PushPlan): string {
  const bytes = plan.blobs.reduce((n, b) => n + b.size, 0);
  return `${plan.blobs.length} blob${plan.blobs.length === 1 ? "" : "s"} (${formatBytes(bytes)}), ${plan.manifests.length} manifest${plan.manifests.length === 1 ? "" : "s"}`;
}

export function blobName(blob: BlobSource): string {
  return `${shortDigest(blob.digest)} (${blob.label})`;
}
