/**
 * The push tool (`pnpm push`, push/cli.ts) against the dev server, end to end:
 *  - a two-platform OCI index whose amd64 image has a ~120 MiB incompressible layer, pushed in
 *    50 MB chunks, pulled back with skopeo, every digest checked;
 *  - --mount-from (every blob mounted; and the fallback upload when the source lacks them);
 *  - a `docker save` archive made by dockerd (archive:, docker:, and --compress), checked through
 *    the registry API and pulled back by docker;
 *  - a connection dropped in the middle of a PATCH (by a proxy): the push resumes where the
 *    registry stands, the blob is not restarted;
 *  - a registry that refuses a blob: the run fails naming it, and no manifest is pushed;
 *  - a Bearer challenge answered with a token from its realm, and --token.
 */
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDockerd, Skopeo, type Dockerd } from "./lib/clients.ts";
import { REPO_ROOT, startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { startFaultProxy, type FaultProxy } from "./lib/fault-proxy.ts";
import { expectManifestDigest, parseJson } from "./lib/harness.ts";
import { describeResponse, headerValue, RegistryClient } from "./lib/http.ts";
import { writeBigImage, writeBlob, writeLayoutIndex, type BigImage } from "./lib/big-layout.ts";
import { allBlobs, descriptorOf, MediaType, readOciLayout, seededImage, sha256, type BuiltImage, type Blob } from "./lib/oci-image.ts";
import { cleanupAll, describeResult, makeTempDir, removeTempDir, run, type RunResult } from "./lib/processes.ts";
import { gunzipSync } from "node:zlib";

const PUSH_CLI = resolve(REPO_ROOT, "push", "cli.ts");
/** A little over 120 MiB, not a multiple of anything: 3 chunks of 50 MB (the last one partial). */
const BIG_BYTES = 120 * 1024 * 1024 + 12_345;
const CHUNK = 50_000_000;

interface DockerImage {
  Id: string;
  RootFS: { Layers: string[] };
}

describe("push tool against the dev server", () => {
  let server: RunningDevServer | undefined;
  let dockerd: Dockerd | undefined;
  let work: string | undefined;
  let layout: string;
  let big: BigImage;
  let arm: BuiltImage;
  let small: BuiltImage;
  let index: Blob;
  let client: RegistryClient;
  const proxies: FaultProxy[] = [];

  const srv = (): RunningDevServer => {
    if (!server) throw new Error("dev server did not start");
    return server;
  };

  /** Runs the tool; credentials go through stdin. */
  const push = (args: string[], opts: { env?: Record<string, string>; password?: string | null } = {}): Promise<RunResult> => {
    const password = opts.password === undefined ? srv().password : opts.password;
    const auth = password === null ? [] : ["-u", srv().username, "--password-stdin"];
    return run(process.execPath, [PUSH_CLI, ...args, ...auth], {
      allowFailure: true,
      timeoutMs: 180_000,
      input: password ? `${password}\n` : "",
      env: { REGISTRY_USERNAME: undefined, REGISTRY_PASSWORD: undefined, REGISTRY_TOKEN: undefined, ...opts.env },
      redact: [srv().password],
    });
  };
  const expectSuccess = (r: RunResult) => expect(r.code, describeResult(r)).toBe(0);
  /** The `<host>/<repo>@<digest>` line the tool prints on stdout. */
  const printedDigest = (r: RunResult): string => {
    const m = /@(sha256:[0-9a-f]{64})\s*$/.exec(r.stdout.trim());
    expect(m, describeResult(r)).not.toBeNull();
    return m![1]!;
  };
  const viaTls = (repoTag: string) => [`${srv().host}/${repoTag}`, "--https", "--insecure"];

  beforeAll(async () => {
    work = makeTempDir("e2e-push");
    layout = join(work, "layout");
    const t0 = Date.now();
    big = writeBigImage(layout, "push-tool-big", BIG_BYTES);
    arm = seededImage("push-tool-multi", { architecture: "arm64", variant: "v8", layerCount: 3 });
    small = seededImage("push-tool-small", { architecture: "amd64", layerCount: 2, bigFileBytes: 300_000 });
    for (const b of [...allBlobs(arm), ...allBlobs(small)]) writeBlob(layout, b);
    const indexBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [
          descriptorOf(big.manifest, { platform: { architecture: "amd64", os: "linux" } }),
          descriptorOf(arm.manifest, { platform: arm.platform }),
        ],
      }),
    );
    index = { mediaType: MediaType.ociIndex, digest: sha256(indexBytes), size: indexBytes.length, bytes: indexBytes };
    writeBlob(layout, index);
    writeLayoutIndex(layout, [
      { tag: "multi", descriptor: descriptorOf(index) },
      { tag: "big", descriptor: descriptorOf(big.manifest) },
      { tag: "small", descriptor: descriptorOf(small.manifest) },
    ]);
    console.info(`layout with a ${BIG_BYTES}-byte layer written in ${Date.now() - t0} ms`);
    const [d, s] = await Promise.allSettled([startDockerd(), startDevServer()]);
    if (d.status === "fulfilled") dockerd = d.value;
    if (s.status === "fulfilled") server = s.value;
    if (d.status === "rejected") throw d.reason;
    if (s.status === "rejected") throw s.reason;
    client = new RegistryClient(server!.url, { username: server!.username, password: server!.password });
  });
  afterAll(() =>
    cleanupAll([...proxies.map((p) => () => p.close()), () => dockerd?.stop(), () => server?.stop(), () => removeTempDir(work)]),
  );

  it("pushes a two-platform index with a 120 MiB layer in 50 MB chunks; skopeo pulls back every digest", async () => {
    const r = await push(["-s", `oci:${layout}:multi`, ...viaTls("e2e/push/multi:v1"), "--chunk-size", String(CHUNK), "--verbose"]);
    expectSuccess(r);
    expect(r.stdout.trim()).toBe(`${srv().host}/e2e/push/multi@${index.digest}`);
    // The big layer went in 3 PATCHes of at most 50 MB, one after the other.
    const patches = [...r.stderr.matchAll(/PATCH \S+ \[(\d+)-(\d+)\] -> 202/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
    const bigPatches = patches.filter(([s, e]) => e - s + 1 === CHUNK || e + 1 === big.big.size);
    expect(bigPatches, r.stderr).toEqual([
      [0, CHUNK - 1],
      [CHUNK, 2 * CHUNK - 1],
      [2 * CHUNK, big.big.size - 1],
    ]);
    expect(r.stderr).toContain(`put index ${index.digest.slice(0, 19)} as v1`);

    await expectManifestDigest(client, "e2e/push/multi", "v1", index.digest);
    const back = join(work!, "pulled");
    const skopeo = new Skopeo(join(work!, "skopeo"));
    await skopeo.run(
      ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${srv().username}:${srv().password}`,
        `docker://${srv().host}/e2e/push/multi:v1`, `oci:${back}:v1`],
      { redact: [srv().password] },
    );
    // readOciLayout re-hashes every blob and checks every size.
    const pulled = readOciLayout(back, "v1");
    expect(pulled).toMatchObject({
      root: index.digest,
      index: index.digest,
      rootMediaType: MediaType.ociIndex,
      manifests: [big.manifest.digest, arm.manifest.digest],
      configs: [big.config.digest, arm.config.digest],
      layers: [...big.layers.map((l) => l.digest), ...arm.layers.map((l) => l.digest)],
    });
  });

  it("mounts blobs from another repository with --mount-from, and uploads when the mount is refused", async () => {
    const r = await push(["-s", `oci:${layout}:big`, ...viaTls("e2e/push/mounted:v1"), "--mount-from", "e2e/push/multi"]);
    expectSuccess(r);
    expect(printedDigest(r)).toBe(big.manifest.digest);
    for (const d of [big.config.digest, ...big.layers.map((l) => l.digest)]) expect(r.stderr).toContain(`mounted ${d.slice(0, 19)}`);
    expect(r.stderr).toContain("uploaded 0 blobs");
    await expectManifestDigest(client, "e2e/push/mounted", "v1", big.manifest.digest);

    // e2e/push/nothing has none of them: each mount answers 202 with a session, used for the upload.
    // (No --https: the tool finds out that the loopback port answers in TLS.)
    const s = await push(["-s", `oci:${layout}:small`, `${srv().host}/e2e/push/small:v1`, "--insecure", "--mount-from", "e2e/push/nothing", "--verbose"]);
    expectSuccess(s);
    expect(s.stderr).toContain(`https://${srv().host} answers in TLS: using HTTPS`);
    expect(s.stderr).toMatch(/POST \S+\?mount=sha256%3A[0-9a-f]{64}&from=e2e%2Fpush%2Fnothing -> 202/);
    expect(s.stderr).not.toMatch(/POST \S+\/blobs\/uploads\/ -> 202/);
    for (const b of [small.config, ...small.layers]) expect(s.stderr).toContain(`pushed ${b.digest.slice(0, 19)}`);
    await expectManifestDigest(client, "e2e/push/small", "v1", small.manifest.digest);
  });

  it("pushes a docker save archive as Docker schema 2 keeping the image ID, from archive:, docker: and with --compress", async () => {
    const d = dockerd!;
    const docker = (args: string[]) => d.docker(args, { redact: [srv().password] });
    await d.docker(["login", "-u", srv().username, "--password-stdin", srv().host], { input: `${srv().password}\n` });
    const image = `${srv().host}/e2e/push/small:v1`;
    await docker(["pull", image]);
    const inspect = async (ref: string) => parseJson<DockerImage[]>((await docker(["image", "inspect", ref])).stdout, "docker inspect")[0]!;
    const info = await inspect(image);
    expect(info.Id).toBe(small.config.digest);
    const archive = join(work!, "small.tar");
    await docker(["save", "-o", archive, image]);

    const fromArchive = await push(["-s", `archive:${archive}`, ...viaTls("e2e/push/from-archive:v1")]);
    expectSuccess(fromArchive);
    const digest = printedDigest(fromArchive);
    const res = await expectManifestDigest(client, "e2e/push/from-archive", "v1", digest);
    expect(headerValue(res, "content-type")).toBe(MediaType.dockerManifest);
    const manifest = parseJson<{ mediaType: string; config: { mediaType: string; digest: string }; layers: Array<{ mediaType: string; digest: string }> }>(
      res.body.toString("utf8"),
      "manifest",
    );
    expect(manifest.mediaType).toBe(MediaType.dockerManifest);
    expect(manifest.config).toMatchObject({ mediaType: MediaType.dockerConfig, digest: info.Id });
    expect(manifest.layers.map((l) => l.mediaType)).toEqual(info.RootFS.Layers.map(() => "application/vnd.docker.image.rootfs.diff.tar"));
    expect(manifest.layers.map((l) => l.digest)).toEqual(info.RootFS.Layers);
    const config = await client.blob("e2e/push/from-archive", info.Id);
    expect(config.status, describeResponse("GET", info.Id, config)).toBe(200);
    expect(sha256(config.body)).toBe(info.Id);

    // Straight from the engine (docker image save under the hood): the same manifest.
    const fromDocker = await push(["-s", `docker:${image}`, ...viaTls("e2e/push/from-docker:v1")], { env: { DOCKER_HOST: d.host } });
    expectSuccess(fromDocker);
    expect(printedDigest(fromDocker)).toBe(digest);

    // --compress: gzip layers, same config and diff IDs.
    const compressed = await push(["-s", `archive:${archive}`, ...viaTls("e2e/push/compressed:v1"), "--compress"]);
    expectSuccess(compressed);
    const cres = await expectManifestDigest(client, "e2e/push/compressed", "v1", printedDigest(compressed));
    const cman = parseJson<{ config: { digest: string }; layers: Array<{ mediaType: string; digest: string }> }>(cres.body.toString("utf8"), "manifest");
    expect(cman.config.digest).toBe(info.Id);
    expect(cman.layers.map((l) => l.mediaType)).toEqual(info.RootFS.Layers.map(() => MediaType.dockerLayerGzip));
    for (const [i, l] of cman.layers.entries()) {
      const blob = await client.blob("e2e/push/compressed", l.digest);
      expect(sha256(gunzipSync(blob.body)), `layer ${i + 1} unpacks to its diff ID`).toBe(info.RootFS.Layers[i]);
    }

    // docker pulls both back to the same image ID.
    for (const ref of [`${srv().host}/e2e/push/from-archive@${digest}`, `${srv().host}/e2e/push/compressed:v1`]) {
      await docker(["rmi", "--force", info.Id]);
      await docker(["pull", ref]);
      expect((await inspect(ref)).Id, ref).toBe(info.Id);
    }
  });

  it("resumes a PATCH cut off in the middle where the registry stands, without restarting the blob", async () => {
    const proxy = await startFaultProxy({ upstream: srv().url, dropPatch: { minLength: CHUNK, afterBytes: 20_000_000 } });
    proxies.push(proxy);
    const r = await push(["-s", `oci:${layout}:big`, `${proxy.host}/e2e/push/resumed:v1`, "--chunk-size", String(CHUNK), "--retry-delay", "200"]);
    expectSuccess(r);
    expect(printedDigest(r)).toBe(big.manifest.digest);
    expect(r.stderr).toMatch(/retrying sha256:[0-9a-f]{12} \(layer 2\/3/);

    const dropped = proxy.log.find((e) => e.dropped);
    expect(dropped, JSON.stringify(proxy.log, null, 1)).toBeDefined();
    expect(dropped!.contentRange).toBe(`0-${CHUNK - 1}`);
    const session = dropped!.url.split("?")[0]!;
    const sameSession = proxy.log.filter((e) => e.url.split("?")[0] === session);
    const summary = sameSession
      .map((e) => `${e.method} ${e.contentRange ?? ""} -> ${e.status ?? "-"}${e.range ? ` Range: ${e.range}` : ""}${e.dropped ? ` dropped after ${e.forwarded} bytes` : ""}`)
      .join("\n");
    console.info(`big blob's session through the proxy:\n${summary}`);
    // Not restarted: after the drop, no chunk from 0 was accepted; the first accepted one starts where
    // the registry said it stood (what arrived before the drop), and the rest follow on.
    const after = sameSession.slice(sameSession.indexOf(dropped!) + 1);
    const accepted = after.filter((e) => e.method === "PATCH" && e.status === 202);
    const ranges = accepted.map((e) => e.contentRange!.split("-").map(Number) as [number, number]);
    expect(ranges[0]![0], summary).toBeGreaterThan(0);
    expect(ranges[0]![0], summary).toBeLessThanOrEqual(20_000_000);
    const lastStatus = after.slice(0, after.indexOf(accepted[0]!)).filter((e) => e.method === "GET").at(-1);
    expect(lastStatus?.range, summary).toBe(`0-${ranges[0]![0] - 1}`);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0], summary).toBe(ranges[i - 1]![1] + 1);
    expect(ranges.at(-1)![1], summary).toBe(big.big.size - 1);
    expect(sameSession.at(-1)).toMatchObject({ method: "PUT", status: 201 });
    // The registry kept at most what arrived before the cut, and the rest went exactly once.
    expect(ranges[0]![0], summary).toBeLessThanOrEqual(dropped!.forwarded);
    expect(accepted.reduce((n, e) => n + e.forwarded, 0), summary).toBe(big.big.size - ranges[0]![0]);

    await expectManifestDigest(client, "e2e/push/resumed", "v1", big.manifest.digest);
    const layer = await client.blob("e2e/push/resumed", big.big.digest);
    expect(layer.status).toBe(200);
    expect(`sha256:${createHash("sha256").update(layer.body).digest("hex")}`).toBe(big.big.digest);
  });

  it("fails naming the blob, and pushes no manifest, when the registry refuses a blob", async () => {
    const refused = small.layers[1]!.digest;
    const proxy = await startFaultProxy({
      upstream: srv().url,
      refuse: (method, url) => (method === "PUT" && decodeURIComponent(url).includes(`digest=${refused}`) ? 500 : undefined),
    });
    proxies.push(proxy);
    const r = await push(["-s", `oci:${layout}:small`, `${proxy.host}/e2e/push/refused:v1`, "--retries", "2", "--retry-delay", "100"]);
    expect(r.code, describeResult(r)).toBe(1);
    expect(r.stderr).toContain(`blob ${refused}`);
    expect(r.stderr).toMatch(/HTTP 500 UNKNOWN: refused by the test proxy \(gave up after 2 retries\)/);
    expect(r.stderr).toContain("the manifest was not pushed");
    expect(r.stdout).toBe("");
    expect(proxy.log.filter((e) => e.url.includes("/manifests/"))).toEqual([]);
    const m = await client.manifest("e2e/push/refused", "v1", RegistryClient.allManifestTypes);
    expect(m.status).toBe(404);
  });

  it("answers a Bearer challenge with a token from its realm, and sends --token as is", async () => {
    const upstream = { username: srv().username, password: srv().password };
    const bearer = { token: `tok-${Date.now()}`, username: "token-user", password: "token-pass", upstream };
    const proxy = await startFaultProxy({ upstream: srv().url, bearer });
    proxies.push(proxy);
    const r = await push(["-s", `oci:${layout}:small`, `${proxy.host}/e2e/push/bearer:v1`, "-u", bearer.username, "-p", bearer.password], {
      password: null,
    });
    expectSuccess(r);
    expect(printedDigest(r)).toBe(small.manifest.digest);
    const tokenRequests = proxy.log.filter((e) => e.url.startsWith("/token"));
    expect(tokenRequests.length).toBeGreaterThan(0);
    expect(tokenRequests[0]).toMatchObject({ authorization: "Basic", status: 200 });
    expect(decodeURIComponent(tokenRequests[0]!.url)).toContain("scope=repository:e2e/push/bearer:pull,push");
    expect(proxy.log.filter((e) => e.method === "PUT").every((e) => e.authorization === "Bearer")).toBe(true);

    const t = await push(["-s", `oci:${layout}:small`, `${proxy.host}/e2e/push/bearer:v2`, "--token", bearer.token], { password: null });
    expectSuccess(t);
    const bad = await push(["-s", `oci:${layout}:small`, `${proxy.host}/e2e/push/bearer:v3`], {
      password: null,
      env: { REGISTRY_TOKEN: "not-the-token" },
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/refused to log in: the token was refused/);
  });

  it("draws bars on a terminal and writes plain lines otherwise", async () => {
    // On a terminal (script(1) gives the tool a pseudo-terminal): bars redrawn in place.
    const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;
    const cli = [process.execPath, PUSH_CLI, "-s", `oci:${layout}:small`, ...viaTls("e2e/push/tty:v1")].map(quote).join(" ");
    const tty = await run("script", ["-qec", cli, "/dev/null"], {
      allowFailure: true,
      timeoutMs: 180_000,
      env: { REGISTRY_USERNAME: srv().username, REGISTRY_PASSWORD: srv().password, REGISTRY_TOKEN: undefined, COLUMNS: "120" },
      redact: [srv().password],
    });
    expectSuccess(tty);
    expect(tty.stdout).toMatch(/total \(\d\/3 blobs\)\s+\[[#-]+\]/);
    expect(tty.stdout).toContain("\x1b[");
    expect(tty.stdout).toMatch(new RegExp(`pushed ${small.layers[0]!.digest.slice(0, 19)}`));

    // Into a pipe: one line per event, no escape codes.
    const lines = await push(["-s", `oci:${layout}:small`, ...viaTls("e2e/push/lines:v1")]);
    expectSuccess(lines);
    expect(lines.stderr).not.toContain("\x1b[");
    for (const layer of small.layers) {
      expect(lines.stderr).toContain(`pushing ${layer.digest.slice(0, 19)}`);
      expect(lines.stderr).toMatch(new RegExp(`pushed ${layer.digest.slice(0, 19)}.* in [\\d.]+ s`));
    }
  });
});
