/**
 * podman against the registry under test: login (refused, then accepted), pull what skopeo pushed
 * (single image and two-platform index) and check the digests podman reports, push under another
 * repository name with --digestfile and check the registry serves exactly that digest, then pull
 * it back by digest; assemble a manifest list and push it as Docker schema 2.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Podman, Skopeo } from "./lib/clients.ts";
import { buildFixtures, pushFixtures, type Fixtures } from "./lib/fixtures.ts";
import { AUTH_REFUSED, expectFailure, expectManifestDigest, parseJson, registryLogsOnFailure } from "./lib/harness.ts";
import { headerValue, RegistryClient } from "./lib/http.ts";
import { MediaType } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

interface PodmanImage {
  Id: string;
  Digest: string;
  RepoDigests: string[];
  Architecture: string;
  Os: string;
  RootFS: { Layers: string[] };
}

describe(`podman against ${targetKind()}`, () => {
  let registry: TestRegistry | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let podman: Podman;
  let repos: { layered: string; multiarch: string };
  const COPY = "e2e/podman/copied";
  const LIST = "e2e/podman/list";

  const reg = (): TestRegistry => {
    if (!registry) throw new Error("registry did not start");
    return registry;
  };
  const image = (repo: string, ref: string) => `${reg().host}/${repo}${ref.startsWith("sha256:") ? "@" : ":"}${ref}`;
  const inspect = async (name: string): Promise<PodmanImage> => {
    const out = await podman.run(["image", "inspect", name]);
    const list = parseJson<PodmanImage[]>(out.stdout, "podman image inspect");
    expect(list).toHaveLength(1);
    return list[0]!;
  };
  const authEntries = (): Record<string, unknown> =>
    existsSync(podman.authFile) ? (parseJson<{ auths?: Record<string, unknown> }>(readFileSync(podman.authFile, "utf8"), "auth file").auths ?? {}) : {};

  beforeAll(async () => {
    work = makeTempDir("e2e-podman");
    fx = buildFixtures(work);
    podman = new Podman(join(work, "podman"));
    registry = await startTestRegistry();
    repos = await pushFixtures(new Skopeo(join(work, "skopeo")), registry, fx, "e2e/podman");
  });
  afterAll(() => cleanupAll([() => registry?.stop(), () => removeTempDir(work)]));
  registryLogsOnFailure(() => registry);

  it("refuses to log in with a wrong password, and pulling without login is refused", async () => {
    const bad = await podman.run(["login", "--tls-verify=false", "-u", reg().username, "--password-stdin", reg().host], {
      input: "not-the-password\n",
      allowFailure: true,
    });
    expectFailure(bad, AUTH_REFUSED);
    expect(authEntries()[reg().host], "a failed login must not store credentials").toBeUndefined();

    const anonymous = await podman.run(["pull", "--tls-verify=false", image(repos.layered, "v1")], { allowFailure: true });
    expectFailure(anonymous, AUTH_REFUSED);
  });

  it("logs in with the right password", async () => {
    const ok = await podman.run(["login", "--tls-verify=false", "-u", reg().username, "--password-stdin", reg().host], {
      input: `${reg().password}\n`,
    });
    expect(ok.stdout).toContain("Login Succeeded");
    expect(authEntries()[reg().host]).toBeDefined();
  });

  it("pulls the 3-layer image that skopeo pushed, with the pushed digest", async () => {
    await podman.run(["pull", "--tls-verify=false", image(repos.layered, "v1")]);
    const img = await inspect(image(repos.layered, "v1"));
    expect(img.Digest).toBe(fx.layered.manifest.digest);
    expect(img.RepoDigests).toContain(image(repos.layered, fx.layered.manifest.digest));
    // podman's image ID is the config digest; its layers are the uncompressed diff IDs.
    expect(`sha256:${img.Id}`).toBe(fx.layered.config.digest);
    expect(img.RootFS.Layers).toEqual(fx.layered.layers.map((l) => l.diffId));
  });

  it("pulls the two-platform index and gets the amd64 image", async () => {
    await podman.run(["pull", "--tls-verify=false", "--arch", "amd64", image(repos.multiarch, fx.tags.multiarch)]);
    const img = await inspect(image(repos.multiarch, fx.tags.multiarch));
    const amd64 = fx.multiarch.images[0]!;
    expect(img.Architecture).toBe("amd64");
    expect(`sha256:${img.Id}`).toBe(amd64.config.digest);
    expect(img.Digest).toBe(fx.multiarch.index.digest);
    expect(img.RepoDigests).toEqual(
      expect.arrayContaining([image(repos.multiarch, fx.multiarch.index.digest), image(repos.multiarch, amd64.manifest.digest)]),
    );
  });

  it("pushes under another repository name; --digestfile, the registry and a re-pull agree", async () => {
    const digestFile = join(work!, "podman-push.digest");
    await podman.run(["push", "--tls-verify=false", "--digestfile", digestFile, image(repos.layered, "v1"), image(COPY, "v1")]);
    const digest = readFileSync(digestFile, "utf8").trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The registry serves exactly that manifest under the new name, for a client that accepts it.
    const res = await expectManifestDigest(reg().client, COPY, "v1", digest, [MediaType.ociManifest, MediaType.dockerManifest]);
    const manifest = parseJson<{ config: { digest: string }; layers: unknown[] }>(res.body.toString("utf8"), "pushed manifest");
    expect(manifest.config.digest).toBe(fx.layered.config.digest);
    expect(manifest.layers).toHaveLength(3);
    await expectManifestDigest(reg().client, COPY, digest, digest, RegistryClient.allManifestTypes);

    // Remove every local copy, then pull the new name back by digest.
    await podman.run(["rmi", "--force", image(repos.layered, "v1"), image(COPY, "v1")]);
    const gone = await podman.run(["image", "exists", image(COPY, "v1")], { allowFailure: true });
    expect(gone.code, "the image should be gone after rmi").toBe(1);
    await podman.run(["pull", "--tls-verify=false", image(COPY, digest)]);
    const img = await inspect(image(COPY, digest));
    expect(img.Digest).toBe(digest);
    expect(img.RepoDigests).toContain(image(COPY, digest));
    expect(`sha256:${img.Id}`).toBe(fx.layered.config.digest);
  });

  it("pushes a manifest list it assembled, as Docker schema 2, and pulls the arm64 image from it", async () => {
    // A Docker manifest list over Docker schema 2 manifests (podman converts the OCI ones).
    await podman.run(["manifest", "create", "e2e-list"]);
    for (const img of fx.multiarch.images) {
      await podman.run(["manifest", "add", "--tls-verify=false", "e2e-list", `docker://${image(repos.multiarch, img.manifest.digest)}`]);
    }
    const digestFile = join(work!, "podman-list.digest");
    await podman.run([
      "manifest", "push", "--all", "--format", "v2s2", "--tls-verify=false", "--digestfile", digestFile,
      "e2e-list", `docker://${image(LIST, "v1")}`,
    ]);
    const digest = readFileSync(digestFile, "utf8").trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const res = await expectManifestDigest(reg().client, LIST, "v1", digest, RegistryClient.allManifestTypes);
    expect(headerValue(res, "content-type")).toBe(MediaType.dockerManifestList);
    const list = parseJson<{ mediaType: string; manifests: Array<{ mediaType: string; digest: string; platform: { architecture: string } }> }>(
      res.body.toString("utf8"),
      "pushed list",
    );
    expect(list.mediaType).toBe(MediaType.dockerManifestList);
    expect(list.manifests.map((m) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
    for (const [i, entry] of list.manifests.entries()) {
      expect(entry.mediaType).toBe(MediaType.dockerManifest);
      const child = await expectManifestDigest(reg().client, LIST, entry.digest, entry.digest, [MediaType.dockerManifest]);
      expect(headerValue(child, "content-type")).toBe(MediaType.dockerManifest);
      const m = parseJson<{ config: { digest: string }; layers: Array<{ digest: string }> }>(child.body.toString("utf8"), "child");
      // Conversion changes media types only: same config and layer blobs.
      expect(m.config.digest).toBe(fx.multiarch.images[i]!.config.digest);
      expect(m.layers.map((l) => l.digest)).toEqual(fx.multiarch.images[i]!.layers.map((l) => l.digest));
    }

    await podman.run(["pull", "--tls-verify=false", "--arch", "arm64", "--variant", "v8", image(LIST, "v1")]);
    const img = await inspect(image(LIST, "v1"));
    expect(img.Architecture).toBe("arm64");
    expect(`sha256:${img.Id}`).toBe(fx.multiarch.images[1]!.config.digest);
    expect(img.RepoDigests).toEqual(expect.arrayContaining([image(LIST, digest), image(LIST, list.manifests[1]!.digest)]));
  });
});
