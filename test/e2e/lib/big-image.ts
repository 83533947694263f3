/**
 * A single-layer image with a layer of any size, streamed to an OCI layout on disk (never held
 * in memory): an uncompressed tar (`application/vnd.oci.image.layer.v1.tar`) holding one file of
 * incompressible bytes, so the blob's size is what travels.
 *
 *   const big = await writeBigImage(dir, "big", 1.1 * 2 ** 30);
 *   // big.layer.digest, big.manifest.digest, ...
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { join } from "node:path";
import { MediaType, REF_NAME_ANNOTATION, sha256, tarHeader } from "./oci-image.ts";

export interface BigImage {
  layoutDir: string;
  tag: string;
  layer: { digest: string; size: number };
  config: { digest: string; size: number };
  manifest: { digest: string; size: number };
}

/** Writes the image to `<dir>` as an OCI layout under `tag`. */
export async function writeBigImage(dir: string, tag: string, fileBytes: number): Promise<BigImage> {
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  const temp = join(blobs, "layer.partial");
  const out = createWriteStream(temp);
  const hash = createHash("sha256");
  let size = 0;
  const write = async (chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
    if (!out.write(chunk)) await once(out, "drain");
  };
  await write(tarHeader("data.bin", "0", fileBytes, 0o644));
  const step = 4 * 1024 * 1024;
  for (let left = fileBytes; left > 0; left -= step) await write(randomBytes(Math.min(step, left)));
  const pad = (512 - (fileBytes % 512)) % 512;
  await write(Buffer.alloc(pad + 1024, 0));
  out.end();
  await once(out, "finish");
  const layer = { digest: `sha256:${hash.digest("hex")}`, size };
  renameSync(temp, join(blobs, layer.digest.slice(7)));

  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/data.bin"] },
      rootfs: { type: "layers", diff_ids: [layer.digest] },
      history: [{ created_by: "r2-registry e2e big layer" }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: layer.digest, size: layer.size }],
    }),
  );
  for (const b of [config, manifest]) writeFileSync(join(blobs, sha256(b).slice(7)), b);
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(manifest), size: manifest.length, annotations: { [REF_NAME_ANNOTATION]: tag } }],
    }),
  );
  return {
    layoutDir: dir,
    tag,
    layer,
    config: { digest: sha256(config), size: config.length },
    manifest: { digest: sha256(manifest), size: manifest.length },
  };
}
