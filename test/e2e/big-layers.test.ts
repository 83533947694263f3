/**
 * A 1.1 GiB single-layer image through real clients: skopeo pushes it (one streamed PATCH) and
 * copies it back; docker pulls it and pushes it again (docker compresses it and sends one big
 * PATCH) to a second registry; podman pulls it and pushes it (gzipped) to that second registry, then
 * pulls it back; the push tool sends it in 100 MB chunks and skopeo copies that
 * back. Every digest is checked.
 * Set E2E_SKIP_BIG=1 to leave this file out (it moves several GiB through the disk).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Podman, Skopeo, startDockerd, type Dockerd } from "./lib/clients.ts";
import { writeBigImage, type BigImage } from "./lib/big-image.ts";
import { expectManifestDigest, parseJson, registryLogsOnFailure } from "./lib/harness.ts";
import { describeResponse, headerValue, RegistryClient } from "./lib/http.ts";
import { cleanupAll, makeTempDir, removeTempDir, run } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";
import { REPO_ROOT } from "./lib/dev-server.ts";

const FILE_BYTES = Math.round(1.1 * 2 ** 30);
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

describe.skipIf(process.env.E2E_SKIP_BIG === "1")(`a 1.1 GiB layer against ${targetKind()}`, () => {
  let a: TestRegistry | undefined;
  let b: TestRegistry | undefined;
  let dockerd: Dockerd | undefined;
  let work: string | undefined;
  let big: BigImage;
  let skopeo: Skopeo;
  const timings: string[] = [];

  beforeAll(async () => {
    work = makeTempDir("e2e-big");
    [a, b, big] = await Promise.all([startTestRegistry(), startTestRegistry(), writeBigImage(join(work, "layout"), "v1", FILE_BYTES)]);
    skopeo = new Skopeo(join(work, "skopeo"));
  });
  afterAll(async () => {
    console.log(`1.1 GiB layer timings:\n  ${timings.join("\n  ")}`);
    await cleanupAll([() => dockerd?.stop(), () => a?.stop(), () => b?.stop(), () => removeTempDir(work)]);
  });
  registryLogsOnFailure(() => a);

  async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const result = await fn();
    timings.push(`${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return result;
  }

  async function expectBlob(client: RegistryClient, repo: string, digest: string, size: number) {
    const head = await client.request("HEAD", `/v2/${repo}/blobs/${digest}`);
    expect(head.status, describeResponse("HEAD", digest, head)).toBe(200);
    expect(headerValue(head, "content-length")).toBe(String(size));
    expect(headerValue(head, "docker-content-digest")).toBe(digest);
  }

  /** skopeo copies `repo:v1` back into a layout (verifying every blob's digest as it goes). */
  async function copyBack(reg: TestRegistry, repo: string, label: string) {
    const back = join(work!, `back-${repo.replace("/", "-")}`);
    await timed(label, () =>
      skopeo.run(
        ["copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${reg.username}:${reg.password}`,
          `docker://${reg.host}/${repo}:v1`, `oci:${back}:v1`],
        { redact: [reg.password], timeoutMs: 900_000 },
      ),
    );
    const layerFile = join(back, "blobs", "sha256", big.layer.digest.slice(7));
    expect(existsSync(layerFile)).toBe(true);
    expect(statSync(layerFile).size).toBe(big.layer.size);
    const index = JSON.parse(readFileSync(join(back, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(index.manifests[0]?.digest).toBe(big.manifest.digest);
    removeTempDir(back);
  }

  it("skopeo pushes it in one PATCH, and copies it back with every digest unchanged", { timeout: 1_800_000 }, async () => {
    const reg = a!;
    await timed("skopeo push", () =>
      skopeo.run(
        ["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", `${reg.username}:${reg.password}`,
          `oci:${big.layoutDir}:${big.tag}`, `docker://${reg.host}/big/skopeo:v1`],
        { redact: [reg.password], timeoutMs: 900_000 },
      ),
    );
    await expectBlob(reg.client, "big/skopeo", big.layer.digest, big.layer.size);
    const manifest = await reg.client.manifest("big/skopeo", "v1", [OCI_MANIFEST], "HEAD");
    expect(headerValue(manifest, "docker-content-digest")).toBe(big.manifest.digest);

    await copyBack(reg, "big/skopeo", "skopeo pull");
  });

  it("docker pulls it, then pushes it in one big PATCH to another registry, and pulls that back", { timeout: 1_800_000 }, async () => {
    const [src, dst] = [a!, b!];
    dockerd = await startDockerd();
    for (const reg of [src, dst]) {
      const login = await dockerd.docker(["login", "-u", reg.username, "--password-stdin", reg.host], { input: `${reg.password}\n` });
      expect(login.stdout).toContain("Login Succeeded");
    }
    await timed("docker pull", () => dockerd!.docker(["pull", `${src.host}/big/skopeo:v1`], { timeoutMs: 900_000 }));
    const pulled = await dockerd.docker(["image", "inspect", "--format", "{{json .RepoDigests}}", `${src.host}/big/skopeo:v1`]);
    expect(JSON.parse(pulled.stdout)).toContain(`${src.host}/big/skopeo@${big.manifest.digest}`);

    await dockerd.docker(["tag", `${src.host}/big/skopeo:v1`, `${dst.host}/big/docker:v1`]);
    const push = await timed("docker push", () => dockerd!.docker(["push", `${dst.host}/big/docker:v1`], { timeoutMs: 900_000 }));
    const pushed = /digest: (sha256:[0-9a-f]{64}) size: \d+/.exec(push.stdout)?.[1];
    expect(pushed, push.stdout).toBeDefined();
    const manifest = await dst.client.manifest("big/docker", "v1", [OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"]);
    expect(headerValue(manifest, "docker-content-digest")).toBe(pushed);
    const layers = (JSON.parse(manifest.body.toString("utf8")) as { layers: { digest: string; size: number }[] }).layers;
    expect(layers).toHaveLength(1);
    expect(layers[0]!.size).toBeGreaterThan(FILE_BYTES);
    await expectBlob(dst.client, "big/docker", layers[0]!.digest, layers[0]!.size);

    await dockerd.docker(["rmi", `${dst.host}/big/docker:v1`, `${src.host}/big/skopeo:v1`]);
    await timed("docker pull (of docker's push)", () => dockerd!.docker(["pull", `${dst.host}/big/docker@${pushed}`], { timeoutMs: 900_000 }));
  });

  it("podman pulls it, pushes it to another registry (gzip-compressing it on the way), and pulls that back", { timeout: 1_800_000 }, async () => {
    // podman 4 cannot push a layer as it is: from its storage it always gzips layers for a
    // registry (a body of unknown length), so the digests of the push are the ones podman reports;
    // the content is checked through the uncompressed digest (diff ID) podman's storage computes
    // from the bytes it receives.
    const [src, dst] = [a!, b!];
    const podman = new Podman(join(work!, "podman"));
    const creds = (reg: TestRegistry) => ["--tls-verify=false", "--creds", `${reg.username}:${reg.password}`];
    const opts = (reg: TestRegistry) => ({ redact: [reg.password], timeoutMs: 900_000 });
    const inspect = async (name: string) => {
      const list = parseJson<Array<{ Id: string; Digest: string; RootFS: { Layers: string[] } }>>(
        (await podman.run(["image", "inspect", name])).stdout, "podman image inspect");
      expect(list).toHaveLength(1);
      return list[0]!;
    };
    /** What podman's storage computed from the bytes it received: (compressed digest, diff ID) of each layer. */
    const storedLayers = () =>
      parseJson<Array<{ "compressed-diff-digest"?: string; "diff-digest"?: string }>>(
        readFileSync(join(podman.dir, "root", "vfs-layers", "layers.json"), "utf8"), "vfs layers.json",
      ).map((l) => ({ compressed: l["compressed-diff-digest"], diffId: l["diff-digest"] }));

    const source = `${src.host}/big/skopeo:v1`;
    await timed("podman pull", () => podman.run(["pull", ...creds(src), source], opts(src)));
    const pulled = await inspect(source);
    expect(pulled.Digest).toBe(big.manifest.digest);
    expect(`sha256:${pulled.Id}`).toBe(big.config.digest);
    expect(pulled.RootFS.Layers).toEqual([big.layer.digest]);
    expect(storedLayers()).toEqual([{ compressed: big.layer.digest, diffId: big.layer.digest }]);

    const target = `${dst.host}/big/podman`;
    const digestFile = join(work!, "podman-push.digest");
    const push = await timed("podman push", () =>
      podman.run(["push", ...creds(dst), "--digestfile", digestFile, source, `docker://${target}:v1`], opts(dst)),
    );
    expect(`${push.stdout}\n${push.stderr}`, "podman must upload the layer, not reuse one").not.toMatch(/skipped|already exists/i);
    const pushed = readFileSync(digestFile, "utf8").trim();
    expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);
    const res = await expectManifestDigest(dst.client, "big/podman", "v1", pushed, [OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"]);
    const manifest = parseJson<{ config: { digest: string }; layers: { digest: string; size: number; mediaType: string }[] }>(
      res.body.toString("utf8"), "pushed manifest");
    expect(manifest.config.digest).toBe(big.config.digest);
    expect(manifest.layers).toHaveLength(1);
    const layer = manifest.layers[0]!;
    expect(layer.mediaType).toMatch(/gzip/);
    expect(layer.digest).not.toBe(big.layer.digest);
    await expectBlob(dst.client, "big/podman", layer.digest, layer.size);

    // Nothing left locally, then pull by the digest podman reported: podman checks the manifest
    // against it and the layer against the manifest, and its storage hashes what it unpacks.
    await podman.run(["rmi", "--all", "--force"]);
    expect(storedLayers()).toEqual([]);
    await timed("podman pull (of podman's push)", () => podman.run(["pull", ...creds(dst), `${target}@${pushed}`], opts(dst)));
    const back = await inspect(`${target}@${pushed}`);
    expect(back.Digest).toBe(pushed);
    expect(`sha256:${back.Id}`).toBe(big.config.digest);
    expect(storedLayers()).toEqual([{ compressed: layer.digest, diffId: big.layer.digest }]);
    await podman.run(["rmi", "--all", "--force"]);
  });

  it.skipIf(!existsSync(join(REPO_ROOT, "push", "cli.ts")))("the push tool pushes it in 100 MB chunks, and it copies back unchanged", { timeout: 1_800_000 }, async () => {
    const reg = a!;
    await timed("push tool", () =>
      run(process.execPath, [join(REPO_ROOT, "push", "cli.ts"), "--source", `oci:${big.layoutDir}:${big.tag}`,
        `${reg.host}/big/tool:v1`, "--insecure", "--https", "--chunk-size", "100000000", "-u", reg.username, "--password-stdin", "--quiet"],
      { input: `${reg.password}\n`, timeoutMs: 900_000 }),
    );
    const manifest = await reg.client.manifest("big/tool", "v1", [OCI_MANIFEST], "HEAD");
    expect(headerValue(manifest, "docker-content-digest")).toBe(big.manifest.digest);
    await expectBlob(reg.client, "big/tool", big.layer.digest, big.layer.size);
    await copyBack(reg, "big/tool", "skopeo pull (of the push tool's push)");
  });
});
