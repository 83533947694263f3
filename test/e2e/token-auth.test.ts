/**
 * Token auth and anonymous pull with docker, the way README tells users to set them up:
 * `pnpm keys` makes the key, `pnpm token` the tokens, `docker login` takes a token as the
 * password. A read-write token pushes, a pull-only token pulls and is refused a push; with
 * ANONYMOUS_PULL=true docker pulls without logging in, and without it that is refused; and with it,
 * docker logs in and pushes through the registry's own tokens from /token.
 * (Runs against the dev server only: distribution 2.8 has no such tokens.)
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo, startDockerd, type Dockerd } from "./lib/clients.ts";
import { startDevServer, REPO_ROOT, type RunningDevServer } from "./lib/dev-server.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { AUTH_REFUSED, expectFailure } from "./lib/harness.ts";
import { cleanupAll, makeTempDir, removeTempDir, run } from "./lib/processes.ts";
import { targetKind } from "./lib/target.ts";

describe.skipIf(targetKind() !== "dev")("tokens and anonymous pull with docker", () => {
  let work: string | undefined;
  let tokens: RunningDevServer | undefined;
  let open: RunningDevServer | undefined;
  let dockerd: Dockerd | undefined;
  let fx: Fixtures;
  let rwToken: string;
  let pullToken: string;

  const script = async (name: string, args: string[]) =>
    (await run(process.execPath, [join(REPO_ROOT, "scripts", name), ...args], { cwd: work })).stdout;
  const docker = (args: string[], opts: { input?: string; allowFailure?: boolean } = {}) =>
    dockerd!.docker(args, { timeoutMs: 300_000, ...opts });
  const loginWith = (host: string, token: string) =>
    docker(["login", "-u", "ci", "--password-stdin", host], { input: `${token}\n`, allowFailure: true });

  beforeAll(async () => {
    work = makeTempDir("e2e-tokens");
    fx = buildFixtures(work);
    const keyFile = join(work, "key.json");
    const keysOut = await script("keys.mjs", ["--out", keyFile]);
    const setting = /^JWT_REGISTRY_TOKENS_PUBLIC_KEY=(\S+)$/m.exec(keysOut)?.[1];
    expect(setting, keysOut).toBeDefined();
    rwToken = (await script("token.mjs", ["--key", keyFile, "--caps", "pull,push", "--ttl", "1h"])).trim();
    pullToken = (await script("token.mjs", ["--key", keyFile, "--caps", "pull", "--ttl", "1h"])).trim();
    [tokens, open, dockerd] = await Promise.all([
      startDevServer({ env: { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting } }),
      startDevServer({ env: { ANONYMOUS_PULL: "true" } }),
      startDockerd(),
    ]);
    const skopeo = new Skopeo(join(work, "skopeo"));
    await skopeoPush(skopeo, open, fx.layoutDir, fx.tags.layered, "public/app");
    await skopeoPush(skopeo, tokens, fx.layoutDir, fx.tags.layered, "tok/base");
  });
  afterAll(() => cleanupAll([() => dockerd?.stop(), () => tokens?.stop(), () => open?.stop(), () => removeTempDir(work)]));

  it("logs in with a read-write token as the password and pushes", async () => {
    const host = tokens!.host;
    expect((await loginWith(host, rwToken)).stdout).toContain("Login Succeeded");
    await docker(["pull", `${host}/tok/base:${fx.tags.layered}`]);
    await docker(["tag", `${host}/tok/base:${fx.tags.layered}`, `${host}/tok/pushed:v1`]);
    const push = await docker(["push", `${host}/tok/pushed:v1`]);
    expect(push.stdout).toMatch(/v1: digest: sha256:[0-9a-f]{64}/);
  });

  it("pulls with a pull-only token and is refused a push", async () => {
    const host = tokens!.host;
    await docker(["logout", host]);
    await docker(["rmi", `${host}/tok/pushed:v1`, `${host}/tok/base:${fx.tags.layered}`]);
    expect((await loginWith(host, pullToken)).stdout).toContain("Login Succeeded");
    await docker(["pull", `${host}/tok/pushed:v1`]);
    await docker(["tag", `${host}/tok/pushed:v1`, `${host}/tok/other:v1`]);
    const refused = await docker(["push", `${host}/tok/other:v1`], { allowFailure: true });
    expect(refused.code).not.toBe(0);
    expect(`${refused.stdout}\n${refused.stderr}`).toMatch(/denied|may not push/i);
  });

  it("refuses a wrong token at login", async () => {
    const forged = `${pullToken.slice(0, -8)}AAAAAAAA`;
    expectFailure(await loginWith(tokens!.host, forged), AUTH_REFUSED);
  });

  it("pulls anonymously when ANONYMOUS_PULL is on, and not when it is off", async () => {
    const pulled = await docker(["pull", `${open!.host}/public/app:${fx.tags.layered}`]);
    expect(pulled.stdout).toContain(fx.digests.layered.root);
    await docker(["logout", tokens!.host]);
    const refused = await docker(["pull", `${tokens!.host}/tok/base:${fx.tags.layered}`], { allowFailure: true });
    expect(refused.code).not.toBe(0);
  });

  it("with ANONYMOUS_PULL, logs in and pushes with the scoped, expiring tokens of /token", async () => {
    const host = open!.host;
    const login = await docker(["login", "-u", open!.username, "--password-stdin", host], { input: `${open!.password}\n` });
    expect(login.stdout).toContain("Login Succeeded");
    // Its layers are in public/app already: docker asks for a token covering that repository too
    // and mounts them from there.
    await docker(["tag", `${host}/public/app:${fx.tags.layered}`, `${host}/public/pushed:v1`]);
    const push = await docker(["push", `${host}/public/pushed:v1`]);
    expect(push.stdout).toMatch(/v1: digest: sha256:[0-9a-f]{64}/);
    await docker(["logout", host]);
  });
});
