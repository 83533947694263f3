/**
 * docker (a private dockerd 20.10 and the docker CLI) against the registry under test: login
 * refused then accepted; pull the amd64 image and the two-platform index that skopeo pushed and
 * check RepoDigests; tag + push to a new repository and check the registry serves exactly the
 * digest docker printed; remove the image and pull it again by digest; refuse after logout.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DOCKER_CLI, Skopeo, startDockerd, type Dockerd } from "./lib/clients.ts";
import { buildFixtures, pushFixtures, type Fixtures } from "./lib/fixtures.ts";
import { AUTH_REFUSED, expectFailure, expectManifestDigest, parseJson, registryLogsOnFailure } from "./lib/harness.ts";
import { headerValue, RegistryClient } from "./lib/http.ts";
import { MediaType, seededBytes, sha256, tarArchive } from "./lib/oci-image.ts";
import { cleanupAll, describeResult, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

/**
 * dockerd treats 127.0.0.0/8 as an insecure registry: when the HTTPS attempt fails (here with 401,
 * because there are no credentials) it retries over plain HTTP against the TLS port and reports
 * that last error instead of the 401: "connection reset by peer" (distribution) or "malformed HTTP
 * response \x15\x03…" (a TLS alert, from workerd). All of these mean "refused"; the registry's
 * 401 itself is checked through the API in skopeo.test.ts.
 */
const ANONYMOUS_REFUSED = new RegExp(
  `${AUTH_REFUSED.source}|connection reset by peer|malformed HTTP response|server gave HTTP response to HTTPS`,
  "i",
);

interface DockerImage {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Architecture: string;
  Os: string;
  RootFS: { Layers: string[] };
}

describe(`docker against ${targetKind()}`, () => {
  let registry: TestRegistry | undefined;
  let dockerd: Dockerd | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let repos: { layered: string; multiarch: string };
  const PUSHED = "e2e/docker/pushed";
  const IMPORTED = "e2e/docker/imported";
  let pushedDigest = "";

  const reg = (): TestRegistry => {
    if (!registry) throw new Error("registry did not start");
    return registry;
  };
  const docker = (args: readonly string[], opts: Parameters<Dockerd["docker"]>[1] = {}) => {
    if (!dockerd) throw new Error("dockerd did not start");
    return dockerd.docker(args, { redact: [reg().password], ...opts });
  };
  const image = (repo: string, ref: string) => `${reg().host}/${repo}${ref.startsWith("sha256:") ? "@" : ":"}${ref}`;
  const inspect = async (name: string): Promise<DockerImage> => {
    const list = parseJson<DockerImage[]>((await docker(["image", "inspect", name])).stdout, "docker image inspect");
    expect(list).toHaveLength(1);
    return list[0]!;
  };
  const storedAuths = (): Record<string, unknown> => {
    const file = join(dockerd!.configDir, "config.json");
    return existsSync(file) ? (parseJson<{ auths?: Record<string, unknown> }>(readFileSync(file, "utf8"), "docker config").auths ?? {}) : {};
  };
  const expectNotPresent = async (name: string) => {
    const r = await docker(["image", "inspect", name], { allowFailure: true });
    expect(r.code, `${name} should not be in dockerd:\n${describeResult(r)}`).not.toBe(0);
  };
  const login = (password: string) =>
    docker(["login", "-u", reg().username, "--password-stdin", reg().host], { input: `${password}\n`, allowFailure: true });

  beforeAll(async () => {
    work = makeTempDir("e2e-docker");
    fx = buildFixtures(work);
    // Start the daemon and the registry side by side.
    const [d, r] = await Promise.allSettled([startDockerd(), startTestRegistry()]);
    if (d.status === "fulfilled") dockerd = d.value;
    if (r.status === "fulfilled") registry = r.value;
    if (d.status === "rejected") throw d.reason;
    if (r.status === "rejected") throw r.reason;
    repos = await pushFixtures(new Skopeo(join(work, "skopeo")), reg(), fx, "e2e/docker");
    const version = await docker(["version", "--format", "client {{.Client.Version}}, daemon {{.Server.Version}}"]);
    console.info(`docker (${DOCKER_CLI}): ${version.stdout.trim()}`);
  });
  afterAll(() => cleanupAll([() => dockerd?.stop(), () => registry?.stop(), () => removeTempDir(work)]));
  registryLogsOnFailure(() => registry);

  it("refuses to log in with a wrong password, with a clear message", async () => {
    const bad = await login("not-the-password");
    expectFailure(bad, AUTH_REFUSED);
    expect(storedAuths()[reg().host], "a failed login must not store credentials").toBeUndefined();
    // Anonymous pulls are refused too.
    expectFailure(await docker(["pull", image(repos.layered, "v1")], { allowFailure: true }), ANONYMOUS_REFUSED);
    await expectNotPresent(image(repos.layered, "v1"));
  });

  it("logs in with the right password", async () => {
    const ok = await login(reg().password);
    expect(ok.code, describeResult(ok)).toBe(0);
    expect(ok.stdout).toContain("Login Succeeded");
    expect(storedAuths()[reg().host]).toBeDefined();
  });

  it("pulls the 3-layer amd64 image; RepoDigests is the pushed manifest digest", async () => {
    const pull = await docker(["pull", image(repos.layered, "v1")]);
    expect(pull.stdout).toContain(`Digest: ${fx.layered.manifest.digest}`);
    const img = await inspect(image(repos.layered, "v1"));
    expect(img.RepoDigests).toEqual([image(repos.layered, fx.layered.manifest.digest)]);
    // docker's image ID is the config digest; its layers are the uncompressed diff IDs.
    expect(img.Id).toBe(fx.layered.config.digest);
    expect(img.RootFS.Layers).toEqual(fx.layered.layers.map((l) => l.diffId));
    expect(img.Architecture).toBe("amd64");
  });

  it("pulls the two-platform index and gets the amd64 image", async () => {
    const pull = await docker(["pull", image(repos.multiarch, fx.tags.multiarch)]);
    expect(pull.stdout).toContain(`Digest: ${fx.multiarch.index.digest}`);
    const img = await inspect(image(repos.multiarch, fx.tags.multiarch));
    const amd64 = fx.multiarch.images[0]!;
    expect(img.Architecture).toBe("amd64");
    expect(img.Id).toBe(amd64.config.digest);
    expect(img.RepoDigests).toEqual([image(repos.multiarch, fx.multiarch.index.digest)]);
  });

  it("does not find a tag that was never pushed", async () => {
    const missing = await docker(["pull", image(repos.layered, "never-pushed")], { allowFailure: true });
    expectFailure(missing, /not found|manifest unknown/i);
  });

  it("tags and pushes to a new repository; the registry serves exactly the digest docker printed", async () => {
    await docker(["tag", image(repos.layered, "v1"), image(PUSHED, "v1")]);
    const push = await docker(["push", image(PUSHED, "v1")]);
    const m = /^v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$/m.exec(push.stdout);
    expect(m, `no "digest: … size: …" line in docker push output:\n${describeResult(push)}`).not.toBeNull();
    pushedDigest = m![1]!;
    const size = Number(m![2]);
    // docker knows these layers came from this registry, so it mounts them across repositories
    // instead of uploading them again.
    expect(push.stdout.match(new RegExp(`: Mounted from ${repos.layered}$`, "gm")) ?? [], describeResult(push)).toHaveLength(3);

    // What docker pushes is a Docker schema 2 manifest; the registry must return it unchanged.
    const res = await expectManifestDigest(reg().client, PUSHED, "v1", pushedDigest, [MediaType.dockerManifest, MediaType.ociManifest]);
    expect(res.body.length).toBe(size);
    expect(headerValue(res, "content-type")).toBe(MediaType.dockerManifest);
    await expectManifestDigest(reg().client, PUSHED, pushedDigest, pushedDigest, RegistryClient.allManifestTypes);

    // Its config is the same blob, and every layer it references is there under the new name.
    const manifest = parseJson<{ config: { digest: string }; layers: Array<{ digest: string; size: number }> }>(
      res.body.toString("utf8"),
      "pushed manifest",
    );
    expect(manifest.config.digest).toBe(fx.layered.config.digest);
    expect(manifest.layers.map((l) => l.digest)).toEqual(fx.digests.layered.layers);
    for (const layer of manifest.layers) {
      const head = await reg().client.blob(PUSHED, layer.digest, "HEAD");
      expect(head.status, `HEAD blob ${layer.digest} in ${PUSHED}`).toBe(200);
    }
    const config = await reg().client.blob(PUSHED, manifest.config.digest);
    expect(config.status).toBe(200);
    expect(sha256(config.body)).toBe(fx.layered.config.digest);
  });

  it("pulls the pushed image again by digest after removing it", async () => {
    expect(pushedDigest, "needs the push test").toMatch(/^sha256:/);
    await docker(["rmi", "--force", fx.layered.config.digest]);
    await expectNotPresent(fx.layered.config.digest);

    const pull = await docker(["pull", image(PUSHED, pushedDigest)]);
    expect(pull.stdout).toContain(`Status: Downloaded newer image for ${image(PUSHED, pushedDigest)}`);
    expect(pull.stdout.match(/: Pull complete$/gm) ?? [], "each layer is downloaded again").toHaveLength(3);
    const img = await inspect(image(PUSHED, pushedDigest));
    expect(img.Id).toBe(fx.layered.config.digest);
    expect(img.RepoDigests).toContain(image(PUSHED, pushedDigest));
  });

  it("pushes an image docker made itself (every layer compressed and uploaded by docker)", async () => {
    // `docker import` turns a tar into a one-layer image that no registry has seen: docker has to
    // compress and upload the layer itself (POST, streamed PATCH, PUT), across several R2 parts.
    const tar = tarArchive([
      { path: "imported/random.bin", content: seededBytes("e2e-docker-import", 13 * 1024 * 1024 + 777) },
      { path: "imported/README", content: "made by docker import\n" },
    ]);
    const imported = await docker(["import", "--change", 'CMD ["/imported/README"]', "-", image(IMPORTED, "v1")], { input: tar });
    const imageId = imported.stdout.trim();
    expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await inspect(imageId)).RootFS.Layers).toEqual([sha256(tar)]);

    const push = await docker(["push", image(IMPORTED, "v1")]);
    expect(push.stdout).toMatch(/: Pushed$/m);
    const digest = /^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(push.stdout)?.[1];
    expect(digest, `no digest in docker push output:\n${describeResult(push)}`).toBeDefined();
    const res = await expectManifestDigest(reg().client, IMPORTED, "v1", digest!, [MediaType.dockerManifest, MediaType.ociManifest]);
    const manifest = parseJson<{ layers: Array<{ digest: string; size: number }> }>(res.body.toString("utf8"), "manifest");
    expect(manifest.layers).toHaveLength(1);
    const layer = await reg().client.blob(IMPORTED, manifest.layers[0]!.digest);
    expect(layer.status).toBe(200);
    expect(layer.body.length).toBe(manifest.layers[0]!.size);
    expect(sha256(layer.body)).toBe(manifest.layers[0]!.digest);
    expect(sha256(gunzipSync(layer.body)), "the uploaded layer unpacks to the imported tar").toBe(sha256(tar));

    // Round trip: remove it locally and pull it back by digest.
    await docker(["rmi", "--force", imageId]);
    await expectNotPresent(imageId);
    await docker(["pull", image(IMPORTED, digest!)]);
    expect((await inspect(image(IMPORTED, digest!))).Id).toBe(imageId);
  });

  it("refuses pulls again after logout", async () => {
    await docker(["logout", reg().host]);
    expect(storedAuths()[reg().host]).toBeUndefined();
    expectFailure(await docker(["pull", image(repos.layered, "v1")], { allowFailure: true }), ANONYMOUS_REFUSED);
    await expectNotPresent(image(repos.layered, "v1"));
  });
});
