/**
 * The images every e2e test uses, built offline from fixed seeds (so digests are stable across
 * runs), written to one OCI layout, and pushed to a registry with skopeo:
 *  - `layered`: linux/amd64, 3 layers; the middle one holds an incompressible file of a little over
 *    21 MiB, so its upload spans several storage parts (R2 multipart parts are 5–10 MiB) and does
 *    not end on a part boundary;
 *  - `multiarch`: an OCI index of linux/amd64 + linux/arm64/v8 images, 3 small layers each.
 */
import { join } from "node:path";
import type { Skopeo } from "./clients.ts";
import {
  buildMultiPlatformIndex,
  digestsOf,
  seededImage,
  writeOciLayout,
  type ArtifactDigests,
  type BuiltImage,
  type BuiltIndex,
} from "./oci-image.ts";
import type { TestRegistry } from "./target.ts";

/** Size of the big file in the `layered` image. */
export const BIG_FILE_BYTES = 21 * 1024 * 1024 + 12_345;

export interface Fixtures {
  /** The OCI layout holding both artifacts. */
  layoutDir: string;
  layered: BuiltImage;
  multiarch: BuiltIndex;
  /** Tags inside the layout (and the tags pushed). */
  tags: { layered: string; multiarch: string };
  digests: { layered: ArtifactDigests; multiarch: ArtifactDigests };
}

export function buildFixtures(dir: string): Fixtures {
  const layered = seededImage("e2e-layered", { architecture: "amd64", layerCount: 3, bigFileBytes: BIG_FILE_BYTES });
  const multiarch = buildMultiPlatformIndex([
    seededImage("e2e-multiarch", { architecture: "amd64", layerCount: 3 }),
    seededImage("e2e-multiarch", { architecture: "arm64", variant: "v8", layerCount: 3 }),
  ]);
  const tags = { layered: "v1", multiarch: "v1-multi" };
  const layoutDir = join(dir, "fixtures-layout");
  writeOciLayout(layoutDir, [
    { tag: tags.layered, artifact: layered },
    { tag: tags.multiarch, artifact: multiarch },
  ]);
  return { layoutDir, layered, multiarch, tags, digests: { layered: digestsOf(layered), multiarch: digestsOf(multiarch) } };
}

/** `skopeo copy --all --preserve-digests oci:<layout>:<tag> docker://<host>/<repo>:<destTag>`. */
export function skopeoPush(skopeo: Skopeo, registry: Pick<TestRegistry, "host" | "username" | "password">, layoutDir: string, tag: string, repo: string, destTag = tag) {
  return skopeo.run(
    [
      "copy", "--all", "--preserve-digests",
      "--dest-tls-verify=false",
      "--dest-creds", `${registry.username}:${registry.password}`,
      `oci:${layoutDir}:${tag}`,
      `docker://${registry.host}/${repo}:${destTag}`,
    ],
    { redact: [registry.password] },
  );
}

/** Pushes both fixtures with skopeo, to `<prefix>/layered:v1` and `<prefix>/multiarch:v1-multi`. */
export async function pushFixtures(skopeo: Skopeo, registry: TestRegistry, fx: Fixtures, prefix: string) {
  const repos = { layered: `${prefix}/layered`, multiarch: `${prefix}/multiarch` };
  await skopeoPush(skopeo, registry, fx.layoutDir, fx.tags.layered, repos.layered);
  await skopeoPush(skopeo, registry, fx.layoutDir, fx.tags.multiarch, repos.multiarch);
  return repos;
}
