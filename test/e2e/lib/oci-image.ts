/**
 * Builds OCI images offline and deterministically: a tiny ustar writer, gzip (node:zlib), sha256
 * (node:crypto), OCI image manifests/configs/indexes, and OCI image layouts on disk (`oci-layout`,
 * `index.json`, `blobs/sha256/…`) that skopeo's `oci:` transport reads.
 *
 * The same seed always gives the same bytes, hence the same digests. Manifests and indexes carry a
 * top-level `mediaType`. Configs are complete enough for docker to pull the image (os,
 * architecture, config.Cmd, rootfs.diff_ids = sha256 of each UNcompressed layer tar, history).
 */
import { createCipheriv, createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { constants as zlibConstants, gzipSync } from "node:zlib";

export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** A content-addressed blob: its bytes, digest, size and the media type it is referenced with. */
export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface FileEntry {
  /** Relative path inside the layer, e.g. "etc/motd" (no leading slash). */
  path: string;
  content: string | Uint8Array;
  /** Permission bits, default 0o644. */
  mode?: number;
}

export interface LayerSpec {
  files: FileEntry[];
  /** Recorded in the config's history. */
  createdBy?: string;
}

export interface ImageSpec {
  layers: LayerSpec[];
  architecture: string;
  os?: string;
  variant?: string;
  cmd?: string[];
  env?: string[];
  labels?: Record<string, string>;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
}

export interface BuiltLayer extends Blob {
  /** sha256 of the uncompressed tar (what goes in rootfs.diff_ids). */
  diffId: string;
  uncompressedSize: number;
}

export interface BuiltImage {
  kind: "image";
  manifest: Blob;
  config: Blob;
  layers: BuiltLayer[];
  platform: Platform;
}

export interface BuiltIndex {
  kind: "index";
  index: Blob;
  images: BuiltImage[];
}

export type Artifact = BuiltImage | BuiltIndex;

/** Every digest an artifact is made of, grouped by role. */
export interface ArtifactDigests {
  /** The digest a tag points at (the index for an index, else the manifest). */
  root: string;
  index: string | undefined;
  manifests: string[];
  configs: string[];
  layers: string[];
}

// ---------------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------------

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Deterministic pseudo-random bytes: AES-256-CTR keystream keyed by sha256(seed). Incompressible. */
export function seededBytes(seed: string, length: number): Buffer {
  const key = createHash("sha256").update(`key:${seed}`).digest();
  const iv = createHash("sha256").update(`iv:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

function blob(mediaType: string, bytes: Buffer): Blob {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
}

function jsonBlob(mediaType: string, value: unknown): Blob {
  return blob(mediaType, Buffer.from(JSON.stringify(value), "utf8"));
}

export function descriptorOf(b: Blob, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra };
}

// ---------------------------------------------------------------------------------------------
// Tar (POSIX ustar)
// ---------------------------------------------------------------------------------------------

const BLOCK = 512;
/** Fixed modification time for every entry (2023-11-14), so archives are reproducible. */
const TAR_MTIME = 1_700_000_000;

function writeString(buf: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > length) throw new Error(`tar: "${value}" does not fit in ${length} bytes`);
  bytes.copy(buf, offset);
}

/** Octal number, zero-padded to length-1 digits, NUL-terminated. */
function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > length - 1) throw new Error(`tar: ${value} does not fit in a ${length}-byte field`);
  writeString(buf, offset, length, `${digits.padStart(length - 1, "0")}\0`);
}

/** One ustar header block for a file ("0") or directory ("5"). */
export function tarHeader(name: string, type: "0" | "5", size: number, mode: number): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  let prefix = "";
  let shortName = name;
  if (Buffer.byteLength(name) > 100) {
    // ustar: split at a slash into prefix (≤155) and name (≤100).
    const cut = name.lastIndexOf("/", name.length - 2);
    prefix = name.slice(0, cut);
    shortName = name.slice(cut + 1);
    if (cut <= 0 || Buffer.byteLength(prefix) > 155 || Buffer.byteLength(shortName) > 100) {
      throw new Error(`tar: path too long: ${name}`);
    }
  }
  writeString(h, 0, 100, shortName);
  writeOctal(h, 100, 8, mode);
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, TAR_MTIME);
  h.fill(0x20, 148, 156); // checksum field counts as spaces while summing
  writeString(h, 156, 1, type);
  writeString(h, 257, 6, "ustar\0");
  writeString(h, 263, 2, "00");
  writeString(h, 265, 32, "root");
  writeString(h, 297, 32, "root");
  writeOctal(h, 329, 8, 0); // devmajor
  writeOctal(h, 337, 8, 0); // devminor
  writeString(h, 345, 155, prefix);
  let sum = 0;
  for (const byte of h) sum += byte;
  writeString(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/**
 * A tar archive of the given files, plus a directory entry for each parent directory, in sorted
 * order, ending with two zero blocks.
 */
export function tarArchive(files: readonly FileEntry[]): Buffer {
  const entries = new Map<string, { type: "0" | "5"; data: Buffer; mode: number }>();
  for (const f of files) {
    const path = f.path.replace(/^\/+/, "");
    if (!path || path.endsWith("/") || path.split("/").includes("..")) throw new Error(`tar: bad path ${f.path}`);
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = `${parts.slice(0, i).join("/")}/`;
      if (!entries.has(dir)) entries.set(dir, { type: "5", data: Buffer.alloc(0), mode: 0o755 });
    }
    const data = typeof f.content === "string" ? Buffer.from(f.content, "utf8") : Buffer.from(f.content);
    entries.set(path, { type: "0", data, mode: f.mode ?? 0o644 });
  }
  const chunks: Buffer[] = [];
  for (const name of [...entries.keys()].sort()) {
    const e = entries.get(name)!;
    chunks.push(tarHeader(name, e.type, e.data.length, e.mode));
    if (e.data.length > 0) {
      chunks.push(e.data);
      const pad = (BLOCK - (e.data.length % BLOCK)) % BLOCK;
      if (pad) chunks.push(Buffer.alloc(pad, 0));
    }
  }
  chunks.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------
// Images and indexes
// ---------------------------------------------------------------------------------------------

export function buildLayer(spec: LayerSpec): BuiltLayer {
  const tar = tarArchive(spec.files);
  // gzip output of node:zlib is deterministic (mtime 0, fixed OS byte) for a given level.
  const gz = gzipSync(tar, { level: 6, strategy: zlibConstants.Z_DEFAULT_STRATEGY });
  return { ...blob(MediaType.ociLayerGzip, gz), diffId: sha256(tar), uncompressedSize: tar.length };
}

export function buildImage(spec: ImageSpec): BuiltImage {
  if (spec.layers.length === 0) throw new Error("an image needs at least one layer");
  const platform: Platform = {
    architecture: spec.architecture,
    os: spec.os ?? "linux",
    ...(spec.variant ? { variant: spec.variant } : {}),
  };
  const layers = spec.layers.map(buildLayer);
  const created = "2023-11-14T22:13:20Z";
  const config = jsonBlob(MediaType.ociConfig, {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: spec.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      Cmd: spec.cmd ?? ["/bin/sh"],
      WorkingDir: "/",
      Labels: spec.labels ?? {},
    },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: spec.layers.map((l, i) => ({ created, created_by: l.createdBy ?? `e2e layer ${i + 1}` })),
  });
  const manifest = jsonBlob(MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: descriptorOf(config),
    layers: layers.map((l) => descriptorOf(l)),
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  });
  return { kind: "image", manifest, config, layers, platform };
}

/** An OCI image index over images of different platforms, in the order given. */
export function buildMultiPlatformIndex(images: readonly BuiltImage[], annotations?: Record<string, string>): BuiltIndex {
  const index = jsonBlob(MediaType.ociIndex, {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.map((img) => descriptorOf(img.manifest, { platform: img.platform })),
    ...(annotations ? { annotations } : {}),
  });
  return { kind: "index", index, images: [...images] };
}

export interface SeededImageOptions {
  architecture: string;
  variant?: string;
  /** Number of layers (default 3). */
  layerCount?: number;
  /** Size of the random file in the middle layer, in bytes (default 64 KiB). Incompressible. */
  bigFileBytes?: number;
}

/**
 * A small image whose content is derived from `seed`: layer 1 has a few text files, the middle
 * layer a random file of `bigFileBytes`, the others a small random file each.
 */
export function seededImage(seed: string, opts: SeededImageOptions): BuiltImage {
  const count = opts.layerCount ?? 3;
  const big = Math.floor(count / 2);
  const layers: LayerSpec[] = [];
  for (let i = 0; i < count; i++) {
    const files: FileEntry[] = [];
    if (i === 0) {
      files.push(
        { path: "etc/e2e/seed", content: `${seed}\n` },
        { path: "etc/e2e/platform", content: `linux/${opts.architecture}${opts.variant ? `/${opts.variant}` : ""}\n` },
        { path: "usr/local/bin/hello", content: `#!/bin/sh\necho hello from ${seed}\n`, mode: 0o755 },
      );
    }
    const size = i === big ? (opts.bigFileBytes ?? 64 * 1024) : 1024 + i * 257;
    files.push({ path: `data/layer-${i + 1}.bin`, content: seededBytes(`${seed}/${opts.architecture}/layer-${i + 1}`, size) });
    layers.push({ files, createdBy: `e2e ${seed} layer ${i + 1}` });
  }
  return buildImage({
    layers,
    architecture: opts.architecture,
    variant: opts.variant,
    cmd: ["/usr/local/bin/hello"],
    labels: { "org.example.e2e.seed": seed },
  });
}

/** Every digest an artifact is made of. */
export function digestsOf(artifact: Artifact): ArtifactDigests {
  const images = artifact.kind === "index" ? artifact.images : [artifact];
  return {
    root: artifact.kind === "index" ? artifact.index.digest : artifact.manifest.digest,
    index: artifact.kind === "index" ? artifact.index.digest : undefined,
    manifests: images.map((i) => i.manifest.digest),
    configs: images.map((i) => i.config.digest),
    layers: images.flatMap((i) => i.layers.map((l) => l.digest)),
  };
}

/** The blob that a tag points at. */
export function rootBlob(artifact: Artifact): Blob {
  return artifact.kind === "index" ? artifact.index : artifact.manifest;
}

export function allBlobs(artifact: Artifact): Blob[] {
  const images = artifact.kind === "index" ? artifact.images : [artifact];
  const out: Blob[] = artifact.kind === "index" ? [artifact.index] : [];
  for (const img of images) out.push(img.manifest, img.config, ...img.layers);
  return out;
}

// ---------------------------------------------------------------------------------------------
// OCI image layout on disk
// ---------------------------------------------------------------------------------------------

/** Writes (or overwrites) an OCI image layout holding the given artifacts under their tags. */
export function writeOciLayout(dir: string, refs: ReadonlyArray<{ tag: string; artifact: Artifact }>): void {
  const blobDir = join(dir, "blobs", "sha256");
  mkdirSync(blobDir, { recursive: true });
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const { artifact } of refs) {
    for (const b of allBlobs(artifact)) writeFileSync(join(blobDir, b.digest.slice("sha256:".length)), b.bytes);
  }
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: refs.map(({ tag, artifact }) => descriptorOf(rootBlob(artifact), { annotations: { [REF_NAME_ANNOTATION]: tag } })),
    }),
  );
}

interface ManifestJson {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
}

export interface LayoutContents extends ArtifactDigests {
  /** Media type of the root (index or manifest). */
  rootMediaType: string;
  /** Every blob file in the layout (digests). */
  blobFiles: string[];
}

/**
 * Reads what `tag` points at in an OCI layout and returns every digest it is made of. Verifies that
 * every blob it reads hashes to its name, and that sizes match the descriptors.
 */
export function readOciLayout(dir: string, tag: string): LayoutContents {
  const blobDir = join(dir, "blobs", "sha256");
  const readBlob = (d: Descriptor): Buffer => {
    const bytes = readFileSync(join(blobDir, d.digest.replace(/^sha256:/, "")));
    const actual = sha256(bytes);
    if (actual !== d.digest) throw new Error(`${dir}: blob ${d.digest} hashes to ${actual}`);
    if (bytes.length !== d.size) throw new Error(`${dir}: blob ${d.digest} has ${bytes.length} bytes, descriptor says ${d.size}`);
    return bytes;
  };
  const top = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as { manifests?: Descriptor[] };
  const tags = (top.manifests ?? []).map((m) => m.annotations?.[REF_NAME_ANNOTATION]);
  const rootDesc = (top.manifests ?? []).find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
  if (!rootDesc) throw new Error(`${dir}: no tag ${tag} in index.json (tags: ${tags.join(", ")})`);

  const out: LayoutContents = {
    root: rootDesc.digest,
    rootMediaType: rootDesc.mediaType,
    index: undefined,
    manifests: [],
    configs: [],
    layers: [],
    blobFiles: readdirSync(blobDir).map((f) => `sha256:${f}`).sort(),
  };
  const visitManifest = (d: Descriptor) => {
    const m = JSON.parse(readBlob(d).toString("utf8")) as ManifestJson;
    out.manifests.push(d.digest);
    if (!m.config) throw new Error(`${dir}: manifest ${d.digest} has no config`);
    readBlob(m.config);
    out.configs.push(m.config.digest);
    for (const l of m.layers ?? []) {
      readBlob(l);
      out.layers.push(l.digest);
    }
  };
  const root = JSON.parse(readBlob(rootDesc).toString("utf8")) as ManifestJson;
  if (root.manifests) {
    out.index = rootDesc.digest;
    for (const d of root.manifests) visitManifest(d);
  } else {
    visitManifest(rootDesc);
  }
  return out;
}
