/**
 * skopeo against the registry under test: push a 3-layer image and a two-platform OCI index from
 * an OCI layout, read them back (raw manifests, inspect, copy back to a new layout) and check every
 * digest is unchanged; list tags; refuse wrong or missing credentials.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { AUTH_REFUSED, expectFailure, expectManifestDigest, parseJson, registryLogsOnFailure } from "./lib/harness.ts";
import { describeResponse, headerValue, httpFetch, RegistryClient } from "./lib/http.ts";
import { allBlobs, MediaType, readOciLayout, sha256 } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

const LAYERED = "e2e/skopeo/layered";
const MULTIARCH = "e2e/skopeo/multiarch";

describe(`skopeo against ${targetKind()}`, () => {
  let registry: TestRegistry | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let skopeo: Skopeo;

  const reg = (): TestRegistry => {
    if (!registry) throw new Error("registry did not start");
    return registry;
  };
  const creds = () => `${reg().username}:${reg().password}`;
  const ref = (repo: string, tagOrDigest: string) =>
    `docker://${reg().host}/${repo}${tagOrDigest.startsWith("sha256:") ? "@" : ":"}${tagOrDigest}`;
  /** skopeo with the good credentials against the registry (for read commands). */
  const read = (cmd: string, ...args: string[]) =>
    skopeo.run([cmd, "--tls-verify=false", "--creds", creds(), ...args], { redact: [reg().password] });

  beforeAll(async () => {
    work = makeTempDir("e2e-skopeo");
    fx = buildFixtures(work);
    skopeo = new Skopeo(join(work, "skopeo"));
    registry = await startTestRegistry();
  });
  afterAll(() => cleanupAll([() => registry?.stop(), () => removeTempDir(work)]));
  registryLogsOnFailure(() => registry);

  it("pushes a 3-layer image and serves back exactly its manifest, config and layers", async () => {
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.layered, LAYERED);

    // The raw manifest is byte-for-byte what was pushed.
    const raw = await read("inspect", "--raw", ref(LAYERED, "v1"));
    expect(sha256(raw.stdout)).toBe(fx.layered.manifest.digest);
    expect(parseJson<{ mediaType: string }>(raw.stdout, "manifest").mediaType).toBe(MediaType.ociManifest);

    // The config too.
    const config = await read("inspect", "--raw", "--config", ref(LAYERED, "v1"));
    expect(sha256(config.stdout)).toBe(fx.layered.config.digest);

    // What a user reads from `skopeo inspect`.
    const info = parseJson<{ Digest: string; Architecture: string; Os: string; Layers: string[]; Labels: Record<string, string> }>(
      (await read("inspect", ref(LAYERED, "v1"))).stdout,
      "skopeo inspect",
    );
    expect(info.Digest).toBe(fx.layered.manifest.digest);
    expect(info.Architecture).toBe("amd64");
    expect(info.Os).toBe("linux");
    expect(info.Layers).toEqual(fx.digests.layered.layers);
    expect(info.Labels["org.example.e2e.seed"]).toBe("e2e-layered");

    // Same manifest by digest, and straight from the API.
    const byDigest = await read("inspect", "--raw", ref(LAYERED, fx.layered.manifest.digest));
    expect(sha256(byDigest.stdout)).toBe(fx.layered.manifest.digest);
    await expectManifestDigest(reg().client, LAYERED, "v1", fx.layered.manifest.digest);
  });

  it("pushes a two-platform OCI index and serves back the index and both manifests", async () => {
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.multiarch, MULTIARCH);

    const raw = await read("inspect", "--raw", ref(MULTIARCH, fx.tags.multiarch));
    expect(sha256(raw.stdout)).toBe(fx.multiarch.index.digest);
    const index = parseJson<{ mediaType: string; manifests: Array<{ digest: string; platform: { architecture: string } }> }>(
      raw.stdout,
      "index",
    );
    expect(index.mediaType).toBe(MediaType.ociIndex);
    expect(index.manifests.map((m) => [m.platform.architecture, m.digest])).toEqual([
      ["amd64", fx.multiarch.images[0]!.manifest.digest],
      ["arm64", fx.multiarch.images[1]!.manifest.digest],
    ]);

    for (const img of fx.multiarch.images) {
      const m = await read("inspect", "--raw", ref(MULTIARCH, img.manifest.digest));
      expect(sha256(m.stdout), `manifest for ${img.platform.architecture}`).toBe(img.manifest.digest);
    }
    // Platform selection as a client does it (skopeo reports the digest of the list itself).
    const arm = parseJson<{ Digest: string; Architecture: string; Layers: string[] }>(
      (await read("inspect", "--override-arch", "arm64", "--override-variant", "v8", ref(MULTIARCH, fx.tags.multiarch))).stdout,
      "skopeo inspect (arm64)",
    );
    expect(arm.Architecture).toBe("arm64");
    expect(arm.Layers).toEqual(fx.multiarch.images[1]!.layers.map((l) => l.digest));
    await expectManifestDigest(reg().client, MULTIARCH, fx.tags.multiarch, fx.multiarch.index.digest);
  });

  it("pushing the same image again re-uses every blob already in the registry", async () => {
    // skopeo says what it skips only in its debug log (the progress bars are off without a TTY).
    const again = await skopeo.run(
      [
        "--debug", "copy", "--preserve-digests",
        "--dest-tls-verify=false", "--dest-creds", creds(),
        `oci:${fx.layoutDir}:${fx.tags.layered}`, ref(LAYERED, "v1"),
      ],
      { redact: [reg().password] },
    );
    for (const blob of [...fx.layered.layers, fx.layered.config]) {
      expect(again.stderr, `${blob.digest} should be checked with HEAD`).toContain(`HEAD ${reg().url}/v2/${LAYERED}/blobs/${blob.digest}`);
    }
    for (const layer of fx.layered.layers) {
      expect(again.stderr, `${layer.digest} should be skipped`).toContain(`Skipping blob ${layer.digest} (already present)`);
    }
    expect(again.stderr, "no upload should start").not.toMatch(/(POST|PATCH|PUT) \S+\/blobs\/uploads/);
  });

  it("copies both back to a new OCI layout with every digest unchanged", async () => {
    const back = join(work!, "copied-back");
    for (const [repo, tag] of [
      [LAYERED, fx.tags.layered],
      [MULTIARCH, fx.tags.multiarch],
    ] as const) {
      await skopeo.run(
        ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(), ref(repo, tag), `oci:${back}:${tag}`],
        { redact: [reg().password] },
      );
    }
    // readOciLayout re-hashes every blob it reads and checks sizes against the descriptors.
    const layered = readOciLayout(back, fx.tags.layered);
    expect(layered).toMatchObject({ ...fx.digests.layered, rootMediaType: MediaType.ociManifest });
    const multi = readOciLayout(back, fx.tags.multiarch);
    expect(multi).toMatchObject({ ...fx.digests.multiarch, rootMediaType: MediaType.ociIndex });
    // Nothing missing, nothing extra.
    const expected = [...new Set([...allBlobs(fx.layered), ...allBlobs(fx.multiarch)].map((b) => b.digest))].sort();
    expect(multi.blobFiles).toEqual(expected);
  });

  it("lists tags", async () => {
    // Two more tags on the same image: a registry-to-registry copy, then a push from the layout.
    await skopeo.run(
      [
        "copy", "--preserve-digests",
        "--src-tls-verify=false", "--src-creds", creds(),
        "--dest-tls-verify=false", "--dest-creds", creds(),
        ref(LAYERED, "v1"), ref(LAYERED, "v2"),
      ],
      { redact: [reg().password] },
    );
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.layered, LAYERED, "latest");
    const tags = parseJson<{ Repository: string; Tags: string[] }>(
      (await read("list-tags", `docker://${reg().host}/${LAYERED}`)).stdout,
      "skopeo list-tags",
    );
    expect(tags.Repository).toBe(`${reg().host}/${LAYERED}`);
    expect([...tags.Tags].sort()).toEqual(["latest", "v1", "v2"]);
    const v2 = await read("inspect", "--raw", ref(LAYERED, "v2"));
    expect(sha256(v2.stdout)).toBe(fx.layered.manifest.digest);

    const multiTags = parseJson<{ Tags: string[] }>((await read("list-tags", `docker://${reg().host}/${MULTIARCH}`)).stdout, "list-tags");
    expect(multiTags.Tags).toEqual([fx.tags.multiarch]);
  });

  it("refuses wrong and missing credentials", async () => {
    const wrong = `${reg().username}:not-the-password`;
    const opts = { allowFailure: true, redact: [reg().password] };

    expectFailure(await skopeo.run(["inspect", "--raw", "--tls-verify=false", "--creds", wrong, ref(LAYERED, "v1")], opts), AUTH_REFUSED);
    expectFailure(await skopeo.run(["inspect", "--raw", "--tls-verify=false", "--creds", `nobody:${reg().password}`, ref(LAYERED, "v1")], opts), AUTH_REFUSED);
    expectFailure(await skopeo.run(["inspect", "--raw", "--tls-verify=false", "--no-creds", ref(LAYERED, "v1")], opts), AUTH_REFUSED);
    expectFailure(await skopeo.run(["list-tags", "--tls-verify=false", "--creds", wrong, `docker://${reg().host}/${LAYERED}`], opts), AUTH_REFUSED);

    // What every client sees first: /v2/ and manifests answer 401 with a challenge.
    for (const path of ["/v2/", `/v2/${LAYERED}/manifests/v1`, `/v2/${LAYERED}/tags/list`]) {
      const res = await httpFetch({ url: `${reg().url}${path}` });
      const what = describeResponse("GET", `${reg().url}${path}`, res);
      expect(res.status, what).toBe(401);
      expect(headerValue(res, "www-authenticate"), what).toMatch(/^(Basic|Bearer) realm=/i);
    }

    // A push with wrong credentials fails and leaves no tag behind.
    const push = await skopeo.run(
      ["copy", "--dest-tls-verify=false", "--dest-creds", wrong, `oci:${fx.layoutDir}:${fx.tags.layered}`, ref(LAYERED, "intruder")],
      opts,
    );
    expectFailure(push, AUTH_REFUSED);
    const tags = parseJson<{ Tags: string[] }>((await read("list-tags", `docker://${reg().host}/${LAYERED}`)).stdout, "list-tags");
    expect(tags.Tags).not.toContain("intruder");
  });

  it("deletes a manifest by digest; its tags stop resolving", async () => {
    const digest = fx.layered.manifest.digest;
    await skopeo.run(["delete", "--tls-verify=false", "--creds", creds(), ref(LAYERED, digest)], { redact: [reg().password] });
    const byDigest = await reg().client.manifest(LAYERED, digest, RegistryClient.allManifestTypes);
    expect(byDigest.status, describeResponse("GET", `${LAYERED}@${digest}`, byDigest)).toBe(404);
    const inspect = await skopeo.run(["inspect", "--raw", "--tls-verify=false", "--creds", creds(), ref(LAYERED, "v1")], {
      allowFailure: true,
      redact: [reg().password],
    });
    expectFailure(inspect, /manifest unknown|not found/i);
    // The other repository is untouched.
    await expectManifestDigest(reg().client, MULTIARCH, fx.tags.multiarch, fx.multiarch.index.digest);
  });
});
