/**
 * What the web UI test pushes: a 3-layer linux/amd64 image, a two-platform index, and two
 * artifacts (a signature and an SBOM) whose subject is the image, as cosign and oras write them.
 */
import { join } from "node:path";
import type { Skopeo } from "./clients.ts";
import { describeResponse, headerValue, type RegistryClient } from "./http.ts";
import {
  buildImage,
  buildMultiPlatformIndex,
  seededImage,
  sha256,
  writeOciLayout,
  type BuiltImage,
  type BuiltIndex,
} from "./oci-image.ts";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const EMPTY = { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256("{}"), size: 2 };

export interface UiFixtures {
  layoutDir: string;
  image: BuiltImage;
  index: BuiltIndex;
}

/** The image (tag `app` in the layout) and the index (tag `multi`), written to an OCI layout. */
export function buildUiFixtures(dir: string): UiFixtures {
  const image = buildImage({
    layers: [
      { files: [{ path: "etc/motd", content: "hello from the ui test\n" }], createdBy: "COPY motd /etc/motd" },
      { files: [{ path: "data/blob.bin", content: seededBytes(48 * 1024) }], createdBy: "COPY blob.bin /data/" },
      { files: [{ path: "usr/local/bin/app", content: "#!/bin/sh\necho app\n", mode: 0o755 }], createdBy: "COPY app /usr/local/bin/" },
    ],
    architecture: "amd64",
    cmd: ["/usr/local/bin/app", "--serve"],
    labels: { "org.opencontainers.image.title": "ui-app", "org.example.team": "registry" },
  });
  const index = buildMultiPlatformIndex([
    seededImage("ui-multi", { architecture: "amd64", layerCount: 2, bigFileBytes: 8 * 1024 }),
    seededImage("ui-multi", { architecture: "arm64", variant: "v8", layerCount: 2, bigFileBytes: 8 * 1024 }),
  ]);
  const layoutDir = join(dir, "ui-layout");
  writeOciLayout(layoutDir, [
    { tag: "app", artifact: image },
    { tag: "multi", artifact: index },
  ]);
  return { layoutDir, image, index };
}

function seededBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  let x = 0x2545f491;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** `skopeo copy --all --preserve-digests oci:<layout>:<tag> docker://<host>/<repo>:<destTag>`. */
export async function skopeoCopy(skopeo: Skopeo, registry: { host: string; username: string; password: string }, layoutDir: string, tag: string, ref: string) {
  await skopeo.run(
    ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", `${registry.username}:${registry.password}`, `oci:${layoutDir}:${tag}`, `docker://${registry.host}/${ref}`],
    { redact: [registry.password] },
  );
}

async function pushBlob(client: RegistryClient, repo: string, bytes: string): Promise<string> {
  const start = await client.request("POST", `/v2/${repo}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(describeResponse("POST", repo, start));
  const location = new URL(headerValue(start, "location")!, client.baseUrl);
  location.searchParams.set("digest", sha256(bytes));
  const put = await client.request("PUT", location.pathname + location.search, { "content-type": "application/octet-stream" }, bytes);
  if (put.status !== 201) throw new Error(describeResponse("PUT", location.pathname, put));
  return sha256(bytes);
}

/** Pushes an artifact manifest whose subject is `subject`; answers its digest. */
export async function attachArtifact(
  client: RegistryClient,
  repo: string,
  subject: { mediaType: string; digest: string; size: number },
  artifactType: string,
  payload: string,
  annotations: Record<string, string>,
): Promise<string> {
  await pushBlob(client, repo, "{}");
  const layer = await pushBlob(client, repo, payload);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType,
    config: EMPTY,
    layers: [{ mediaType: "application/octet-stream", digest: layer, size: Buffer.byteLength(payload), annotations: { "org.opencontainers.image.title": "payload" } }],
    subject,
    annotations,
  });
  const digest = sha256(manifest);
  const res = await client.request("PUT", `/v2/${repo}/manifests/${digest}`, { "content-type": OCI_MANIFEST }, manifest);
  if (res.status !== 201) throw new Error(describeResponse("PUT", digest, res));
  return digest;
}

