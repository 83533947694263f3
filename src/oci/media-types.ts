/** Manifest media types the registry understands. */
export const MediaType = {
  OCI_MANIFEST: "application/vnd.oci.image.manifest.v1+json",
  OCI_INDEX: "application/vnd.oci.image.index.v1+json",
  DOCKER_MANIFEST: "application/vnd.docker.distribution.manifest.v2+json",
  DOCKER_MANIFEST_LIST: "application/vnd.docker.distribution.manifest.list.v2+json",
  DOCKER_SCHEMA1: "application/vnd.docker.distribution.manifest.v1+json",
  DOCKER_SCHEMA1_SIGNED: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** Media types that describe an image (config + layers). */
export const IMAGE_MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST]);
/** Media types that describe an index of manifests. */
export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST]);
/** Docker's deprecated schema 1, served when stored but no longer accepted on push. */
export const SCHEMA1_TYPES: ReadonlySet<string> = new Set([MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED]);

/** Layer media types that may live outside the registry (foreign layers, fetched from `urls`). */
export const NON_DISTRIBUTABLE_LAYER_TYPES: ReadonlySet<string> = new Set([
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
]);

/** The media type part of a Content-Type header, lowercased and without parameters. */
export function baseMediaType(contentType: string | null | undefined): string | undefined {
  const base = contentType?.split(";")[0]?.trim().toLowerCase();
  return base ? base : undefined;
}
