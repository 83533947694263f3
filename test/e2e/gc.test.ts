/**
 * Garbage collection with real clients: skopeo pushes an image and a two-platform index into one
 * repository (and the image into a nested repository), the image's tag is deleted, a dry run
 * reports what an untagged collection would free, the collection frees it, and skopeo still pulls
 * everything else back with every digest unchanged. (distribution 2.8 collects offline, with
 * `registry garbage-collect`, so this file runs against the dev server only.)
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { registryLogsOnFailure } from "./lib/harness.ts";
import { describeResponse } from "./lib/http.ts";
import { allBlobs, MediaType, readOciLayout } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

const APP = "e2e/gc/app";
const NESTED = "e2e/gc/app/nested";

interface Report {
  success: boolean;
  manifests: { digest: string }[];
  blobs: { digest: string; size: number }[];
  bytes: number;
}

describe.skipIf(targetKind() !== "dev")("garbage collection of skopeo-pushed images", () => {
  let registry: TestRegistry | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let skopeo: Skopeo;
  const reg = () => registry!;
  const creds = () => `${reg().username}:${reg().password}`;

  beforeAll(async () => {
    work = makeTempDir("e2e-gc");
    fx = buildFixtures(work);
    skopeo = new Skopeo(join(work, "skopeo"));
    registry = await startTestRegistry();
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.layered, APP);
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.multiarch, APP);
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.layered, NESTED);
  });
  afterAll(() => cleanupAll([() => registry?.stop(), () => removeTempDir(work)]));
  registryLogsOnFailure(() => registry);

  async function collect(path: string): Promise<Report> {
    const res = await reg().client.request("POST", path);
    expect(res.status, describeResponse("POST", path, res)).toBe(200);
    return JSON.parse(res.body.toString("utf8")) as Report;
  }

  it("frees an untagged image's manifest and blobs, and keeps everything tags reach", async () => {
    const del = await reg().client.request("DELETE", `/v2/${APP}/manifests/${fx.tags.layered}`);
    expect(del.status, describeResponse("DELETE", fx.tags.layered, del)).toBe(202);
    const layeredBlobs = allBlobs(fx.layered).filter((b) => b.digest !== fx.layered.manifest.digest);

    const dry = await collect(`/v2/${APP}/gc?mode=untagged&grace=0&dry_run=true`);
    expect(dry.manifests.map((m) => m.digest)).toEqual([fx.layered.manifest.digest]);
    expect(dry.blobs.map((b) => b.digest).sort()).toEqual(layeredBlobs.map((b) => b.digest).sort());
    // Bytes the nested repository shares (if skopeo mounted them there) are not freed.
    expect(dry.bytes).toBeGreaterThan(0);
    // Nothing went in the dry run.
    expect((await reg().client.request("HEAD", `/v2/${APP}/manifests/${fx.layered.manifest.digest}`)).status).toBe(200);

    const real = await reg().client.request("POST", `/v2/${APP}/gc?mode=untagged&grace=0`);
    expect(real.status).toBe(200);
    expect(real.body.toString("utf8")).toBe('{"success":true}');
    expect((await reg().client.request("HEAD", `/v2/${APP}/manifests/${fx.layered.manifest.digest}`)).status).toBe(404);
    for (const blob of layeredBlobs) {
      expect((await reg().client.request("HEAD", `/v2/${APP}/blobs/${blob.digest}`)).status, blob.digest).toBe(404);
    }
  });

  it("leaves the index and the nested repository pulling back with every digest unchanged", async () => {
    // A registry-wide run too: every repository, abandoned uploads, unused upload bytes.
    expect((await collect(`/v2/_gc?mode=untagged&grace=0`)).success).toBe(true);
    const back = join(work!, "pulled");
    for (const [repo, tag] of [
      [APP, fx.tags.multiarch],
      [NESTED, fx.tags.layered],
    ] as const) {
      await skopeo.run(
        ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(), `docker://${reg().host}/${repo}:${tag}`, `oci:${back}:${tag}`],
        { redact: [reg().password] },
      );
    }
    // readOciLayout re-hashes every blob and checks sizes against the descriptors.
    expect(readOciLayout(back, fx.tags.multiarch)).toMatchObject({ ...fx.digests.multiarch, rootMediaType: MediaType.ociIndex });
    expect(readOciLayout(back, fx.tags.layered)).toMatchObject({ ...fx.digests.layered, rootMediaType: MediaType.ociManifest });
  });
});
