/**
 * Tag policies with a real client (one dev server with IMMUTABLE_TAGS and RETENTION_JSON): skopeo
 * pushes a release tag, is refused when it pushes another image under it (the registry's message
 * in skopeo's output) and accepted when it pushes the same image again; then CI tags are pushed,
 * a retention dry run lists exactly the old ones, a real run removes them, a garbage collection
 * frees their manifests and blobs, and the tags kept pull back with every digest unchanged.
 * Tags pushed over days (`most_recent` and `pushed_within` against 30 tags) are in
 * policies-retention.test.ts, and docker refused over an immutable tag in policies-docker.test.ts.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { skopeoPush } from "./lib/fixtures.ts";
import { expectFailure } from "./lib/harness.ts";
import { describeResponse, RegistryClient } from "./lib/http.ts";
import { allBlobs, readOciLayout, seededImage, writeOciLayout, type BuiltImage } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { targetKind } from "./lib/target.ts";

const APP = "e2e/policies/app";
const CI = ["ci-1", "ci-2", "ci-3", "ci-4", "ci-5"];

interface Report {
  success: boolean;
  complete: boolean;
  repositories: { name: string; removed: { tag: string; digest: string; why: string }[]; kept: { tag: string; why: string }[] }[];
}

describe.skipIf(targetKind() !== "dev")("tag policies with skopeo", () => {
  let server: RunningDevServer | undefined;
  let client: RegistryClient;
  let work: string | undefined;
  let skopeo: Skopeo;
  let layout: string;
  const images: Record<string, BuiltImage> = {};
  const srv = () => server!;

  beforeAll(async () => {
    work = makeTempDir("e2e-policies");
    for (const tag of ["release", "other", ...CI]) images[tag] = seededImage(`e2e-policies-${tag}`, { architecture: "amd64", layerCount: 2, bigFileBytes: 4096 });
    layout = join(work, "layout");
    writeOciLayout(layout, Object.entries(images).map(([tag, artifact]) => ({ tag, artifact })));
    skopeo = new Skopeo(join(work, "skopeo"));
    server = await startDevServer({
      env: {
        IMMUTABLE_TAGS: "*:v*",
        RETENTION_JSON: JSON.stringify([{ repositories: ["e2e/policies/*"], keep: { tags: ["v*"], most_recent: 2 } }]),
      },
    });
    client = new RegistryClient(srv().url, { username: srv().username, password: srv().password });
  });
  afterAll(() => cleanupAll([() => server?.stop(), () => removeTempDir(work)]));

  const push = (tag: string, destTag: string, allowFailure = false) =>
    skopeo.run(
      ["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", `${srv().username}:${srv().password}`, `oci:${layout}:${tag}`, `docker://${srv().host}/${APP}:${destTag}`],
      { redact: [srv().password], allowFailure },
    );

  async function digestOf(reference: string): Promise<string | undefined> {
    const res = await client.request("HEAD", `/v2/${APP}/manifests/${reference}`, { accept: "application/vnd.oci.image.manifest.v1+json" });
    return res.status === 200 ? (res.headers["docker-content-digest"] as string) : undefined;
  }

  it("refuses to move an immutable tag, and skopeo prints why", async () => {
    await push("release", "v1");
    const refused = await push("other", "v1", true);
    expectFailure(refused, /denied: e2e\/policies\/app:v1 is an immutable tag \(IMMUTABLE_TAGS rule \*:v\*\)/);
    expect(`${refused.stderr}`).toContain(`cannot be moved to ${images.other!.manifest.digest}`);
    expect(await digestOf("v1")).toBe(images.release!.manifest.digest);
    // A CI retry of the same image succeeds.
    await push("release", "v1");
    expect(await digestOf("v1")).toBe(images.release!.manifest.digest);
  });

  it("removes old CI tags by retention, and a collection frees what they held", async () => {
    for (const tag of CI) await push(tag, tag);
    const ask = async (query: string): Promise<Report> => {
      const path = `/v2/${APP}/retention?${query}`;
      const res = await client.request("POST", path);
      expect(res.status, describeResponse("POST", path, res)).toBe(200);
      return JSON.parse(res.body.toString("utf8")) as Report;
    };
    const dry = await ask("dry_run=true");
    expect(dry.repositories[0]!.removed.map((v) => v.tag).sort()).toEqual(["ci-1", "ci-2", "ci-3"]);
    expect(dry.repositories[0]!.removed[0]!.why).toMatch(/^RETENTION_JSON\[0\] \(e2e\/policies\/\*\): matches none of v\*; \d+(st|nd|rd|th) most recently pushed \(keeps 2\)$/);
    expect(dry.repositories[0]!.kept.map((v) => v.tag).sort()).toEqual(["ci-4", "ci-5", "v1"]);
    expect(await digestOf("ci-1")).toBe(images["ci-1"]!.manifest.digest);

    const real = await ask("report=true");
    expect(real.complete).toBe(true);
    expect(real.repositories[0]!.removed.map((v) => v.tag).sort()).toEqual(["ci-1", "ci-2", "ci-3"]);
    const tags = JSON.parse((await client.request("GET", `/v2/${APP}/tags/list`)).body.toString("utf8")) as { tags: string[] };
    expect(tags.tags).toEqual(["ci-4", "ci-5", "v1"]);

    const gc = await client.request("POST", `/v2/${APP}/gc?mode=untagged&grace=0&report=true`);
    expect(gc.status).toBe(200);
    const freed = JSON.parse(gc.body.toString("utf8")) as { manifests: { digest: string }[]; blobs: { digest: string }[] };
    const old = ["ci-1", "ci-2", "ci-3"].map((t) => images[t]!);
    expect(freed.manifests.map((m) => m.digest).sort()).toEqual(old.map((i) => i.manifest.digest).sort());
    // …and the blobs of the image refused under v1, which no manifest references.
    const blobsOf = (image: BuiltImage) => allBlobs(image).filter((b) => b.digest !== image.manifest.digest).map((b) => b.digest);
    expect(freed.blobs.map((b) => b.digest).sort()).toEqual([...old, images.other!].flatMap(blobsOf).sort());
  });

  it("pulls the kept tags back with every digest unchanged", async () => {
    const back = join(work!, "pulled");
    for (const [tag, from] of [["v1", "release"], ["ci-4", "ci-4"], ["ci-5", "ci-5"]] as const) {
      await skopeo.run(
        ["copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${srv().username}:${srv().password}`, `docker://${srv().host}/${APP}:${tag}`, `oci:${back}:${tag}`],
        { redact: [srv().password] },
      );
      expect(readOciLayout(back, tag).root).toBe(images[from]!.manifest.digest);
    }
  });
});
