/**
 * Immutable tags with docker (a private dockerd 20.10; the dev server with `IMMUTABLE_TAGS=*:v*`):
 * docker pushes image A as v1.0.0; pushing image B under v1.0.0 is refused, docker exits non-zero
 * and prints the registry's message (the tag, the rule, the digest it keeps and the one refused);
 * B goes out under a new tag instead, as the message says, and a CI retry pushing A again under
 * v1.0.0 succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDockerd, type Dockerd } from "./lib/clients.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { expectFailure } from "./lib/harness.ts";
import { RegistryClient } from "./lib/http.ts";
import { seededBytes, tarArchive } from "./lib/oci-image.ts";
import { cleanupAll, describeResult } from "./lib/processes.ts";
import { targetKind } from "./lib/target.ts";

const APP = "e2e/policies/docker";

describe.skipIf(targetKind() !== "dev")("immutable tags with docker", () => {
  let server: RunningDevServer | undefined;
  let dockerd: Dockerd | undefined;
  let client: RegistryClient;
  const srv = () => server!;
  const docker = (args: readonly string[], opts: Parameters<Dockerd["docker"]>[1] = {}) => dockerd!.docker(args, { redact: [srv().password], ...opts });
  const image = (tag: string) => `${srv().host}/${APP}:${tag}`;
  /** The digest `docker push` printed (`<tag>: digest: sha256:… size: …`). */
  const pushedDigest = (output: string) => /: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(output)?.[1];

  async function digestOf(tag: string): Promise<string | undefined> {
    const res = await client.manifest(APP, tag, RegistryClient.allManifestTypes, "HEAD");
    return res.status === 200 ? (res.headers["docker-content-digest"] as string) : undefined;
  }

  /** Makes a one-layer image with `docker import` (docker compresses and uploads it itself). */
  async function importImage(seed: string): Promise<string> {
    const tar = tarArchive([{ path: `app/${seed}.bin`, content: seededBytes(`e2e-policies-docker-${seed}`, 64 * 1024) }]);
    return (await docker(["import", "-", `e2e-local/${seed}:latest`], { input: tar })).stdout.trim();
  }

  beforeAll(async () => {
    // The daemon and the registry side by side.
    const [d, s] = await Promise.allSettled([startDockerd(), startDevServer({ env: { IMMUTABLE_TAGS: "*:v*" } })]);
    if (d.status === "fulfilled") dockerd = d.value;
    if (s.status === "fulfilled") server = s.value;
    if (d.status === "rejected") throw d.reason;
    if (s.status === "rejected") throw s.reason;
    client = new RegistryClient(srv().url, { username: srv().username, password: srv().password });
    await docker(["login", "-u", srv().username, "--password-stdin", srv().host], { input: `${srv().password}\n` });
  });
  afterAll(() => cleanupAll([() => dockerd?.stop(), () => server?.stop()]));

  let digestA: string;
  let digestB: string;

  it("pushes image A as v1.0.0", async () => {
    await docker(["tag", await importImage("a"), image("v1.0.0")]);
    const push = await docker(["push", image("v1.0.0")]);
    digestA = pushedDigest(push.stdout)!;
    expect(digestA, describeResult(push)).toMatch(/^sha256:/);
    expect(await digestOf("v1.0.0")).toBe(digestA);
  });

  it("refuses image B under v1.0.0, and docker prints the registry's message", async () => {
    await docker(["tag", await importImage("b"), image("v1.0.0")]);
    const refused = await docker(["push", image("v1.0.0")], { allowFailure: true });
    expectFailure(refused, /denied: e2e\/policies\/docker:v1\.0\.0 is an immutable tag \(IMMUTABLE_TAGS rule \*:v\*\)/);
    const moved = new RegExp(`it points at ${digestA} and cannot be moved to (sha256:[0-9a-f]{64}); push under a new tag`).exec(`${refused.stdout}${refused.stderr}`);
    expect(moved, describeResult(refused)).not.toBeNull();
    digestB = moved![1]!;
    expect(await digestOf("v1.0.0")).toBe(digestA);

    // Under a new tag it goes out, with the digest the refusal named.
    await docker(["tag", image("v1.0.0"), image("v1.0.1")]);
    const next = await docker(["push", image("v1.0.1")]);
    expect(pushedDigest(next.stdout), describeResult(next)).toBe(digestB);
    expect(await digestOf("v1.0.1")).toBe(digestB);
  });

  it("accepts image A again under v1.0.0 (a CI retry)", async () => {
    await docker(["tag", "e2e-local/a:latest", image("v1.0.0")]);
    const again = await docker(["push", image("v1.0.0")]);
    expect(again.stdout, describeResult(again)).toMatch(/: Layer already exists$/m);
    expect(pushedDigest(again.stdout), describeResult(again)).toBe(digestA);
    expect(await digestOf("v1.0.0")).toBe(digestA);
  });
});
