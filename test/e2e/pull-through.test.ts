/**
 * Pull-through end to end: CNCF distribution 2.8 with htpasswd (plain HTTP) is the upstream; an
 * image and a two-platform index are pushed there with skopeo under `mirror/…`; our dev server is
 * started with REGISTRIES_JSON pointing at `<upstream>/mirror` (a path prefix) with Basic
 * credentials from a secret named by `password_env`. skopeo copies everything out through our
 * registry (verifying every digest); then the upstream is stopped and the same pulls are served
 * from the cache.
 *
 * Needs scripts/dev.mjs to pass UPSTREAM_PASSWORD through to the Worker.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { startDistribution, type RunningDistribution } from "./lib/distribution.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { readOciLayout, sha256 } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";

/** The secret our Worker reads the upstream password from. */
const PASSWORD_ENV = "UPSTREAM_PASSWORD";

describe("pull-through from distribution 2.8 (Basic auth, path prefix)", () => {
  let upstream: RunningDistribution | undefined;
  let ours: RunningDevServer | undefined;
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
    ours = await startDevServer({
      env: {
        REGISTRIES_JSON: JSON.stringify([{ registry: `${up().url}/mirror`, username: up().username, password_env: PASSWORD_ENV }]),
        [PASSWORD_ENV]: up().password,
      },
    });
  });
  afterAll(() => cleanupAll([() => ours?.stop(), () => upstream?.stop(), () => removeTempDir(work)]));

  it("pulls an image and an index through, then serves them from the cache with the upstream stopped", async () => {
    try {
      for (const round of ["through", "cached"]) {
        if (round === "cached") await up().stop();
        const image = join(work!, `image-${round}`);
        await pull("app", fx.tags.layered, image);
        expect(readOciLayout(image, fx.tags.layered)).toMatchObject(fx.digests.layered);
        expect(sha256(await rawManifest("app", fx.tags.layered))).toBe(fx.digests.layered.root);

        const index = join(work!, `index-${round}`);
        await pull("multi", fx.tags.multiarch, index);
        expect(readOciLayout(index, fx.tags.multiarch)).toMatchObject(fx.digests.multiarch);
        expect(sha256(await rawManifest("multi", fx.tags.multiarch))).toBe(fx.digests.multiarch.root);
      }
    } catch (error) {
      console.error(`--- our registry: last output ---\n${reg().logs().slice(-4000)}`);
      throw error;
    }
  });
});
