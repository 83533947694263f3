/**
 * `docker save` archives. Both layouts are read in place: the classic one (`manifest.json`,
 * `<hex>.json` configs, `<id>/layer.tar` layers, possibly symlinked to each other) and the one
 * docker 25+ writes (`manifest.json` pointing into an OCI layout: `blobs/sha256/<hex>`,
 * `index.json`, `oci-layout`).
 *
 * Uncompressed layers are pushed as they are under a Docker schema 2 manifest written from
 * `manifest.json` (so the config digest, i.e. the image ID, and the diff IDs are unchanged), or
 * gzipped first with --compress. When the archive's layers are already compressed (docker's
 * containerd image store keeps pulled layers as they came) and the archive's OCI layout holds the
 * image's own manifest or index complete, that is pushed as is, keeping its digest.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compressionOf, type Compression } from "../sniff.ts";
import { gzipToFile } from "../compress.ts";
import { bufferBlob, BlobSet, type BlobSource, type PushPlan } from "../image.ts";
import {
  isSha256Digest,
  MediaTypes,
  parseJson,
  sha256Of,
  sha256OfFileRange,
  type Descriptor,
  type ManifestJson,
} from "../media.ts";
import { streamRange, type TarIndex } from "../tar.ts";
import { MissingBlobError, readManifest, walkLayout, type WalkOptions } from "./oci-layout.ts";
import { digestFromBlobPath, TarStore } from "./store.ts";

/** One image of `manifest.json`. */
interface SavedImage {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, Descriptor>;
}

interface ImageConfig {
  rootfs?: { type?: string; diff_ids?: string[] };
}

export interface DockerArchiveOptions extends WalkOptions {
  /** gzip uncompressed layers (new layer digests; the config and its diff IDs stay). */
  compress?: boolean;
  /** Where --compress writes its temp files. */
  tmpDir?: string;
  /** Reports slow preparation steps ("compressing layer 2/5…"). */
  log?: (message: string) => void;
}

function normalizeTag(tag: string): string[] {
  const withTag = /:[^/]+$/.test(tag) ? tag : `${tag}:latest`;
  const short = withTag.replace(/^docker\.io\//, "").replace(/^library\//, "");
  return [tag, withTag, short, `docker.io/${short}`, `docker.io/library/${short}`];
}

function selectImage(images: SavedImage[], ref: string | undefined, where: string): SavedImage {
  const listing = () => images.map((i) => `  ${(i.RepoTags ?? []).join(", ") || "(untagged)"}  config ${i.Config}`).join("\n");
  if (images.length === 0) throw new Error(`${where}: manifest.json lists no images`);
  if (ref === undefined) {
    if (images.length === 1) return images[0]!;
    throw new Error(`${where} holds ${images.length} images; say which one (archive:<path>:<name:tag>):\n${listing()}`);
  }
  const wanted = normalizeTag(ref);
  const hex = ref.replace(/^sha256:/, "");
  const found = images.filter(
    (i) =>
      (i.RepoTags ?? []).some((t) => normalizeTag(t).some((n) => wanted.includes(n))) ||
      (/^[0-9a-f]{12,64}$/.test(hex) && i.Config.replace(/^blobs\/sha256\//, "").startsWith(hex)),
  );
  if (found.length === 1) return found[0]!;
  // `docker save` of an image by ID leaves RepoTags empty: the only image is the one.
  if (found.length === 0 && images.length === 1 && (images[0]!.RepoTags ?? []).length === 0) return images[0]!;
  throw new Error(`${where} has ${found.length === 0 ? "no image" : "several images"} named ${JSON.stringify(ref)}:\n${listing()}`);
}

/** The image's own manifest in the archive's OCI layout, complete, or undefined. */
async function embeddedPlan(store: TarStore, image: SavedImage, configDigest: string, opts: WalkOptions) {
  const indexBytes = await store.readFile("index.json");
  if (!indexBytes || !store.tar.has("oci-layout")) return undefined;
  const index = parseJson<ManifestJson>(indexBytes, `${store.description}: index.json`);
  const tags = new Set((image.RepoTags ?? []).flatMap(normalizeTag));
  const candidates = (index.manifests ?? []).filter((d) => {
    const names = [d.annotations?.["io.containerd.image.name"], d.annotations?.["org.opencontainers.image.ref.name"]];
    return names.some((n) => n && tags.has(n)) || tags.size === 0;
  });
  for (const root of candidates.length ? candidates : (index.manifests ?? [])) {
    // The whole index if every platform is there, else the one manifest whose config is this image.
    const tries: Descriptor[] = [root];
    if (store.blobSize(root.digest) !== undefined) {
      const { json } = await readManifest(store, root, "image");
      if (json.config?.digest !== configDigest && !json.manifests) continue;
      for (const child of json.manifests ?? []) {
        if (store.blobSize(child.digest) === undefined) continue;
        const c = await readManifest(store, child, "manifest");
        if (c.json.config?.digest === configDigest) tries.push(child);
      }
      if (json.manifests && tries.length === 1) continue;
    }
    for (const d of tries) {
      try {
        return await walkLayout(store, d, opts);
      } catch (err) {
        if (!(err instanceof MissingBlobError)) throw err;
      }
    }
  }
  return undefined;
}

function layerMediaType(c: Compression, oci: boolean): string {
  if (c === "zstd") return MediaTypes.ociLayerZstd;
  if (oci) return c === "gzip" ? MediaTypes.ociLayerGzip : MediaTypes.ociLayer;
  return c === "gzip" ? MediaTypes.dockerLayerGzip : MediaTypes.dockerLayer;
}

/** Plans the push of one image of a `docker save` archive (or hands an OCI-only archive to the caller). */
export async function planDockerArchive(
  tar: TarIndex,
  ref: string | undefined,
  opts: DockerArchiveOptions,
  cleanup: () => Promise<void>,
): Promise<PushPlan> {
  const where = `archive ${tar.path}`;
  const store = new TarStore(tar);
  const images = parseJson<SavedImage[]>(await tar.read("manifest.json"), `${where}: manifest.json`);
  if (!Array.isArray(images)) throw new Error(`${where}: manifest.json is not a docker save manifest`);
  const image = selectImage(images, ref, where);
  const description = `${where} (${(image.RepoTags ?? [])[0] ?? image.Config})`;

  const configBytes = await tar.read(image.Config, 16 * 1024 * 1024);
  const configDigest = sha256Of(configBytes);
  const named = digestFromBlobPath(image.Config) ?? (/^([0-9a-f]{64})\.json$/.exec(image.Config) ? `sha256:${image.Config.slice(0, 64)}` : undefined);
  if (named && named !== configDigest) throw new Error(`${where}: config ${image.Config} is corrupt (its content hashes to ${configDigest})`);
  const config = parseJson<ImageConfig>(configBytes, `${where}: config ${image.Config}`);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== image.Layers.length) {
    throw new Error(`${where}: the config lists ${diffIds.length} diff IDs but manifest.json ${image.Layers.length} layers`);
  }

  const layers = image.Layers.map((path, i) => {
    const entry = tar.file(path);
    if (!entry) throw new Error(`${where}: layer ${i + 1} (${path}) is not in the archive`);
    return { path, entry, index: i };
  });
  const compressions = await Promise.all(layers.map((l) => compressionOf(tar.path, l.entry.offset, l.entry.size)));

  // Layers docker keeps compressed: its own manifest, when the archive has it whole, keeps every digest.
  if (!opts.compress && compressions.some((c) => c !== "none")) {
    const embedded = await embeddedPlan(store, image, configDigest, opts);
    if (embedded) return { ...embedded, description, cleanup };
  }

  const tmp = opts.compress ? mkdtempSync(join(opts.tmpDir ?? tmpdir(), "push-gzip-")) : undefined;
  const removeTmp = async () => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  };
  const allCleanup = async () => {
    await removeTmp();
    await cleanup();
  };
  try {
    const oci = compressions.includes("zstd");
    const blobs = new BlobSet();
    const descriptors: Descriptor[] = [];
    const configMediaType = oci ? MediaTypes.ociConfig : MediaTypes.dockerConfig;
    blobs.add(bufferBlob(configBytes, configDigest, configMediaType, "config"));
    for (const { path, entry, index } of layers) {
      const label = `layer ${index + 1}/${layers.length}`;
      const diffId = diffIds[index]!;
      const compression = compressions[index]!;
      let blob: BlobSource;
      if (compression === "none" && opts.compress) {
        opts.log?.(`compressing ${label} (${path})…`);
        const gz = await gzipToFile(streamRange(tar.path, entry.offset, entry.size), tmp!);
        if (gz.uncompressedDigest !== diffId) {
          throw new Error(`${where}: ${label} (${path}) hashes to ${gz.uncompressedDigest}, but the config says its diff ID is ${diffId}`);
        }
        blob = {
          digest: gz.digest,
          size: gz.size,
          mediaType: layerMediaType("gzip", oci),
          label,
          verify: false,
          open: (start, end) => streamRange(gz.path, 0, gz.size, start, end),
        };
      } else {
        // The digest: named by the path, else the diff ID for a plain tar, else hashed here.
        let digest = digestFromBlobPath(path) ?? (compression === "none" && isSha256Digest(diffId) ? diffId : undefined);
        if (compression === "none" && digest !== undefined && digest !== diffId) {
          throw new Error(`${where}: ${label} ${path} is an uncompressed tar but the config says its diff ID is ${diffId}`);
        }
        if (!digest) {
          opts.log?.(`hashing ${label} (${path})…`);
          digest = await sha256OfFileRange(tar.path, entry.offset, entry.size);
        }
        blob = {
          digest,
          size: entry.size,
          mediaType: layerMediaType(compression, oci),
          label,
          verify: true,
          open: (start, end) => streamRange(tar.path, entry.offset, entry.size, start, end),
        };
      }
      blobs.add(blob);
      descriptors.push({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: oci ? MediaTypes.ociManifest : MediaTypes.dockerManifest,
      config: { mediaType: configMediaType, size: configBytes.length, digest: configDigest },
      layers: descriptors,
    };
    const bytes = Buffer.from(JSON.stringify(manifest, null, 3), "utf8");
    const list = blobs.list();
    return {
      description,
      blobs: [list[0]!, ...list.slice(1).sort((a, b) => b.size - a.size)],
      manifests: [{ digest: sha256Of(bytes), mediaType: manifest.mediaType, bytes, label: "manifest" }],
      notes: [],
      cleanup: allCleanup,
    };
  } catch (err) {
    await removeTmp();
    throw err;
  }
}
