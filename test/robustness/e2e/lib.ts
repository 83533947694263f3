/**
 * Shared pieces of the robustness suite's end-to-end tests: images that share layers, and
 * pushing and pulling them with skopeo against a dev server, every digest checked.
 */
import { join } from "node:path";
import { expect } from "vitest";
import type { Skopeo } from "../../e2e/lib/clients.ts";
import type { RunningDevServer } from "../../e2e/lib/dev-server.ts";
import { RegistryClient } from "../../e2e/lib/http.ts";
import { buildImage, digestsOf, readOciLayout, seededBytes, type BuiltImage, type LayerSpec } from "../../e2e/lib/oci-image.ts";

/**
 * `count` images that share layers: every one has the common base layer, each pair shares a
 * middle layer, and each has a layer of its own (`ownBytes` of incompressible data).
 */
export function sharedLayerImages(seed: string, count: number, ownBytes = 64 * 1024): BuiltImage[] {
  const layer = (name: string, bytes: number): LayerSpec => ({
    files: [{ path: `data/${name}.bin`, content: seededBytes(`${seed}/${name}`, bytes) }],
    createdBy: name,
  });
  return Array.from({ length: count }, (_, i) =>
    buildImage({
      layers: [layer("base", 200 * 1024), layer(`pair-${Math.floor(i / 2)}`, 32 * 1024), layer(`own-${i}`, ownBytes)],
      architecture: "amd64",
      labels: { "org.example.robustness": `${seed}-${i}` },
    }),
  );
}

export function clientFor(server: RunningDevServer): RegistryClient {
  return new RegistryClient(server.url, { username: server.username, password: server.password });
}

export function push(skopeo: Skopeo, server: RunningDevServer, layoutDir: string, tag: string, repo: string) {
  return skopeo.run(
    ["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", `${server.username}:${server.password}`, `oci:${layoutDir}:${tag}`, `docker://${server.host}/${repo}:${tag}`],
    { redact: [server.password] },
  );
}

/** Pulls `repo:tag` into a fresh OCI layout under `dir` and checks every digest against `image`. */
export async function pullAndVerify(skopeo: Skopeo, server: RunningDevServer, repo: string, tag: string, image: BuiltImage, dir: string): Promise<void> {
  const out = join(dir, `${repo.replace(/\//g, "_")}-${tag}-${Math.random().toString(36).slice(2, 8)}`);
  await skopeo.run(
    ["copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${server.username}:${server.password}`, `docker://${server.host}/${repo}:${tag}`, `oci:${out}:${tag}`],
    { redact: [server.password] },
  );
  // readOciLayout re-hashes every blob it reads.
  expect(readOciLayout(out, tag)).toMatchObject(digestsOf(image));
}
