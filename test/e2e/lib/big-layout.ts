/**
 * For the push tool's tests: an OCI image layout holding an image with a big incompressible layer,
 * written as a stream (AES-CTR keystream in 1 MiB pieces, hashed on the way to disk), so memory
 * stays flat whatever the size. The big layer is an uncompressed tar
 * (`application/vnd.oci.image.layer.v1.tar`), so its digest is also its diff ID.
 */
import { createCipheriv, createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { buildLayer, descriptorOf, MediaType, REF_NAME_ANNOTATION, sha256, type Blob, type Descriptor } from "./oci-image.ts";

export const OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";

/** A 512-byte ustar header for one regular file. */
function ustarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const put = (offset: number, text: string) => h.write(text, offset, "utf8");
  const octal = (offset: number, width: number, value: number) => put(offset, `${value.toString(8).padStart(width - 1, "0")}\0`);
  put(0, name);
  octal(100, 8, 0o644);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 1_700_000_000);
  h.fill(0x20, 148, 156);
  put(156, "0");
  put(257, "ustar\0");
  put(263, "00");
  let sum = 0;
  for (const b of h) sum += b;
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

export interface FileBlob {
  digest: string;
  size: number;
  mediaType: string;
}

/**
 * Writes `blobs/sha256/<digest>` of a tar layer holding one file of `bytes` seeded random bytes,
 * streaming. Returns its descriptor (digest = diff ID, since it is not compressed).
 */
export function writeBigLayer(layoutDir: string, seed: string, bytes: number, fileName = "data/big.bin"): FileBlob {
  const blobDir = join(layoutDir, "blobs", "sha256");
  mkdirSync(blobDir, { recursive: true });
  const tmp = join(blobDir, `.tmp-${process.pid}`);
  const fd = openSync(tmp, "w");
  const hash = createHash("sha256");
  let size = 0;
  const write = (b: Buffer) => {
    hash.update(b);
    writeSync(fd, b);
    size += b.length;
  };
  try {
    write(ustarHeader(fileName, bytes));
    const key = createHash("sha256").update(`key:${seed}`).digest();
    const iv = createHash("sha256").update(`iv:${seed}`).digest().subarray(0, 16);
    const cipher = createCipheriv("aes-256-ctr", key, iv);
    const zeros = Buffer.alloc(1 << 20);
    for (let left = bytes; left > 0; left -= zeros.length) write(cipher.update(zeros.subarray(0, Math.min(left, zeros.length))));
    const pad = (512 - (bytes % 512)) % 512;
    write(Buffer.alloc(pad + 1024, 0));
  } finally {
    closeSync(fd);
  }
  const digest = `sha256:${hash.digest("hex")}`;
  renameSync(tmp, join(blobDir, digest.slice("sha256:".length)));
  return { digest, size, mediaType: OCI_LAYER_TAR };
}

/** Writes an in-memory blob into the layout. */
export function writeBlob(layoutDir: string, b: Blob): void {
  const blobDir = join(layoutDir, "blobs", "sha256");
  mkdirSync(blobDir, { recursive: true });
  writeFileSync(join(blobDir, b.digest.slice("sha256:".length)), b.bytes);
}

function jsonBlob(mediaType: string, value: unknown): Blob {
  const bytes = Buffer.from(JSON.stringify(value), "utf8");
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

export interface BigImage {
  manifest: Blob;
  config: Blob;
  /** Layer descriptors in order; the big one in the middle. */
  layers: FileBlob[];
  big: FileBlob;
  diffIds: string[];
}

/**
 * A linux/amd64 image of 3 layers written into `layoutDir` (blobs only; index.json is the
 * caller's): a small gzip layer, the big uncompressed layer, another small gzip layer.
 */
export function writeBigImage(layoutDir: string, seed: string, bigBytes: number): BigImage {
  const first = buildLayer({ files: [{ path: "etc/push-test", content: `${seed}\n` }] });
  const big = writeBigLayer(layoutDir, `${seed}/big`, bigBytes);
  const last = buildLayer({ files: [{ path: "etc/push-test-last", content: `last layer of ${seed}\n` }] });
  writeBlob(layoutDir, first);
  writeBlob(layoutDir, last);
  const diffIds = [first.diffId, big.digest, last.diffId];
  const created = "2023-11-14T22:13:20Z";
  const config = jsonBlob(MediaType.ociConfig, {
    created,
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"], Labels: { "org.example.push-test": seed } },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created, created_by: `push test layer ${i + 1}` })),
  });
  writeBlob(layoutDir, config);
  const layers: FileBlob[] = [
    { digest: first.digest, size: first.size, mediaType: first.mediaType },
    big,
    { digest: last.digest, size: last.size, mediaType: last.mediaType },
  ];
  const manifest = jsonBlob(MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: descriptorOf(config),
    layers,
  });
  writeBlob(layoutDir, manifest);
  return { manifest, config, layers, big, diffIds };
}

/** Writes `oci-layout` and an `index.json` naming each descriptor by its tag. */
export function writeLayoutIndex(layoutDir: string, refs: ReadonlyArray<{ tag: string; descriptor: Descriptor }>): void {
  mkdirSync(layoutDir, { recursive: true });
  writeFileSync(join(layoutDir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(layoutDir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: refs.map(({ tag, descriptor }) => ({ ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME_ANNOTATION]: tag } })),
    }),
  );
}
