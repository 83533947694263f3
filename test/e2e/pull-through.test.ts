/**
 * Pull-through end to end: CNCF distribution 2.8 with htpasswd (plain HTTP) is the upstream; an
 * image and a two-platform index are pushed there with skopeo under `mirror/…`; our dev server is
 * started with REGISTRIES_JSON pointing at `<upstream>/mirror` (a path prefix) with Basic
 * credentials from a secret named by `password_env`. skopeo copies everything out through our
 * registry (verifying every digest), after docker pulled the image and the index through it; then
 * the upstream is stopped and the same pulls are served from the cache. A second entry for the
 * same upstream with `"namespace": "up"` serves `up/mirror/app` as `mirror/app` (cached under
 * `up/mirror/app`), and only names under `up/`.
 *
 * (scripts/dev.mjs passes the variables REGISTRIES_JSON names with password_env to the Worker.)
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo, startDockerd, type Dockerd } from "./lib/clients.ts";
import { startFaultProxy, type FaultProxy } from "./lib/fault-proxy.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { startDistribution, type RunningDistribution } from "./lib/distribution.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { httpFetch } from "./lib/http.ts";
import { readOciLayout, sha256 } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";

/** The secret our Worker reads the upstream password from. */
const PASSWORD_ENV = "UPSTREAM_PASSWORD";

describe("pull-through from distribution 2.8 (Basic auth, path prefix)", () => {
  let upstream: RunningDistribution | undefined;
  let ours: RunningDevServer | undefined;
  let dockerd: Dockerd | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let skopeo: Skopeo;

  const up = () => upstream!;
  const reg = () => ours!;
  const ref = (repo: string, tag: string) => `docker://${reg().host}/${repo}:${tag}`;
  const pull = (repo: string, tag: string, dir: string) =>
    skopeo.run(
      ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${reg().username}:${reg().password}`, ref(repo, tag), `oci:${dir}:${tag}`],
      { redact: [reg().password] },
    );
  const rawManifest = async (repo: string, tag: string) =>
    (await skopeo.run(["inspect", "--raw", "--tls-verify=false", "--creds", `${reg().username}:${reg().password}`, ref(repo, tag)], { redact: [reg().password] })).stdout;

  beforeAll(async () => {
    work = makeTempDir("e2e-pull-through");
    fx = buildFixtures(work);
    skopeo = new Skopeo(join(work, "skopeo"));
    upstream = await startDistribution({ auth: true, tls: false });
    const target = { host: up().host, username: up().username!, password: up().password! };
    await skopeoPush(skopeo, target, fx.layoutDir, fx.tags.layered, "mirror/app");
    await skopeoPush(skopeo, target, fx.layoutDir, fx.tags.multiarch, "mirror/multi");
    const [server, daemon] = await Promise.allSettled([
      startDevServer({
        env: {
          REGISTRIES_JSON: JSON.stringify([
            { registry: `${up().url}/mirror`, username: up().username, password_env: PASSWORD_ENV },
            { registry: up().url, namespace: "up", username: up().username, password_env: PASSWORD_ENV },
          ]),
          [PASSWORD_ENV]: up().password,
        },
      }),
      startDockerd(),
    ]);
    // Keep whichever started, so that afterAll stops it even if the other failed.
    if (server.status === "fulfilled") ours = server.value;
    if (daemon.status === "fulfilled") dockerd = daemon.value;
    if (server.status === "rejected") throw server.reason;
    if (daemon.status === "rejected") throw daemon.reason;
    const login = await dockerd!.docker(["login", "-u", reg().username, "--password-stdin", reg().host], { input: `${reg().password}\n` });
    expect(login.stdout).toContain("Login Succeeded");
  });
  afterAll(() => cleanupAll([() => dockerd?.stop(), () => ours?.stop(), () => upstream?.stop(), () => removeTempDir(work)]));

  /** docker pull through our registry; answers the image's RepoDigests. */
  async function dockerPull(repo: string, tag: string): Promise<string[]> {
    const image = `${reg().host}/${repo}:${tag}`;
    await dockerd!.docker(["pull", image], { timeoutMs: 300_000 });
    const digests = JSON.parse((await dockerd!.docker(["image", "inspect", "--format", "{{json .RepoDigests}}", image])).stdout) as string[];
    await dockerd!.docker(["rmi", image]);
    return digests;
  }

  it("sends only names under a namespace to its entry, without the namespace", async () => {
    const get = (path: string) =>
      httpFetch({
        url: `${reg().url}/v2/${path}`,
        headers: {
          Authorization: `Basic ${Buffer.from(`${reg().username}:${reg().password}`).toString("base64")}`,
          Accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        },
      });
    // `up/app` is `app` upstream (not there), never `mirror/app` through the other entry; and
    // `mirror/app` here is `mirror/mirror/app` upstream through the entry without a namespace.
    expect((await get(`up/app/manifests/${fx.tags.layered}`)).status).toBe(404);
    expect((await get(`mirror/app/manifests/${fx.tags.layered}`)).status).toBe(404);
    const through = await get(`up/mirror/app/manifests/${fx.tags.layered}`);
    expect(through.status, through.body.toString()).toBe(200);
    expect(sha256(through.body)).toBe(fx.digests.layered.root);
  });

  it("pulls an image and an index through, then serves them from the cache with the upstream stopped", async () => {
    try {
      for (const round of ["through", "cached"]) {
        if (round === "cached") await up().stop();
        // docker first, so that in the first round it is the one that goes to the upstream.
        expect(await dockerPull("app", fx.tags.layered)).toContain(`${reg().host}/app@${fx.digests.layered.root}`);
        expect(await dockerPull("multi", fx.tags.multiarch)).toContain(`${reg().host}/multi@${fx.digests.multiarch.root}`);

        const image = join(work!, `image-${round}`);
        await pull("app", fx.tags.layered, image);
        expect(readOciLayout(image, fx.tags.layered)).toMatchObject(fx.digests.layered);
        expect(sha256(await rawManifest("app", fx.tags.layered))).toBe(fx.digests.layered.root);

        const index = join(work!, `index-${round}`);
        await pull("multi", fx.tags.multiarch, index);
        expect(readOciLayout(index, fx.tags.multiarch)).toMatchObject(fx.digests.multiarch);
        expect(sha256(await rawManifest("multi", fx.tags.multiarch))).toBe(fx.digests.multiarch.root);

        // The namespaced entry: up/mirror/app is mirror/app upstream, cached under up/mirror/app.
        const namespaced = join(work!, `namespaced-${round}`);
        await pull("up/mirror/app", fx.tags.layered, namespaced);
        expect(readOciLayout(namespaced, fx.tags.layered)).toMatchObject(fx.digests.layered);
        expect(sha256(await rawManifest("up/mirror/app", fx.tags.layered))).toBe(fx.digests.layered.root);
      }
    } catch (error) {
      console.error(`--- our registry: last output ---\n${reg().logs().slice(-4000)}`);
      throw error;
    }
  });
});

/**
 * The same through a Bearer token server (the fault proxy in token mode, in front of distribution
 * 2.8 with TLS), pulled with docker: the image exists only upstream, docker pulls it through our
 * registry, then the upstream is stopped and docker pulls it again from the cache.
 */
describe("pull-through behind a Bearer token server, with docker", () => {
  let upstream: RunningDistribution | undefined;
  let tokens: FaultProxy | undefined;
  let ours: RunningDevServer | undefined;
  let dockerd: Dockerd | undefined;
  let work: string | undefined;
  let fx: Fixtures;

  beforeAll(async () => {
    work = makeTempDir("e2e-pull-bearer");
    fx = buildFixtures(work);
    upstream = await startDistribution({ auth: true, tls: true });
    await skopeoPush(new Skopeo(join(work, "skopeo")), { host: upstream.host, username: upstream.username!, password: upstream.password! }, fx.layoutDir, fx.tags.layered, "team/app");
    tokens = await startFaultProxy({
      upstream: upstream.url,
      bearer: { token: "upstream-token-42", username: "puller", password: "s3cret", upstream: { username: upstream.username!, password: upstream.password! } },
    });
    [ours, dockerd] = await Promise.all([
      startDevServer({
        env: {
          REGISTRIES_JSON: JSON.stringify([{ registry: tokens.url, username: "puller", password_env: "TOKEN_SERVER_PASSWORD" }]),
          TOKEN_SERVER_PASSWORD: "s3cret",
        },
      }),
      startDockerd(),
    ]);
    const login = await dockerd.docker(["login", "-u", ours.username, "--password-stdin", ours.host], { input: `${ours.password}\n` });
    expect(login.stdout).toContain("Login Succeeded");
  });
  afterAll(() => cleanupAll([() => dockerd?.stop(), () => ours?.stop(), () => tokens?.close(), () => upstream?.stop(), () => removeTempDir(work)]));

  it("docker pulls through, with one token for the repository, then from the cache once the upstream is gone", async () => {
    const image = `${ours!.host}/team/app:${fx.tags.layered}`;
    const digestOf = async () =>
      JSON.parse((await dockerd!.docker(["image", "inspect", "--format", "{{json .RepoDigests}}", image])).stdout) as string[];
    try {
      await dockerd!.docker(["pull", image], { timeoutMs: 300_000 });
      expect(await digestOf()).toContain(`${ours!.host}/team/app@${fx.digests.layered.root}`);
      const log = tokens!.log;
      // One token, asked for pull on this repository only, then every request with it.
      expect(log.filter((e) => e.url.startsWith("/token")).map((e) => decodeURIComponent(new URL(e.url, "http://x").searchParams.get("scope") ?? ""))).toEqual(["repository:team/app:pull"]);
      const served = log.filter((e) => e.url.startsWith("/v2/team/app/") && e.status === 200);
      expect(served.length, JSON.stringify(log)).toBeGreaterThan(0);
      expect(served.map((e) => e.authorization), JSON.stringify(log)).toEqual(served.map(() => "Bearer"));

      await tokens!.close();
      await upstream!.stop();
      await dockerd!.docker(["rmi", image]);
      await dockerd!.docker(["pull", image], { timeoutMs: 300_000 });
      expect(await digestOf()).toContain(`${ours!.host}/team/app@${fx.digests.layered.root}`);
    } catch (error) {
      console.error(`--- our registry: last output ---\n${ours!.logs().slice(-4000)}`);
      throw error;
    }
  });
});
