/**
 * OCI 1.1 referrers with real clients: skopeo pushes an image and a two-platform index, a
 * signature and an SBOM are attached to them (hand-made artifact manifests, as cosign and oras
 * write them), and the referrers API finds them; re-pushing the index keeps its signature.
 * (distribution 2.8 has no referrers API, so this file runs against the dev server only.)
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "./lib/fixtures.ts";
import { registryLogsOnFailure } from "./lib/harness.ts";
import { describeResponse, headerValue } from "./lib/http.ts";
import { rootBlob, sha256 } from "./lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "./lib/processes.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const EMPTY = { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256("{}"), size: 2 };

describe.skipIf(targetKind() !== "dev")("referrers with skopeo-pushed images", () => {
  let registry: TestRegistry | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let skopeo: Skopeo;
  const reg = () => registry!;

  beforeAll(async () => {
    work = makeTempDir("e2e-referrers");
    fx = buildFixtures(work);
    skopeo = new Skopeo(join(work, "skopeo"));
    registry = await startTestRegistry();
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.multiarch, "e2e/ref/multiarch");
    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.layered, "e2e/ref/layered");
  });
  afterAll(() => cleanupAll([() => registry?.stop(), () => removeTempDir(work)]));
  registryLogsOnFailure(() => registry);

  /** Uploads a blob in one POST + PUT. */
  async function pushBlob(repo: string, bytes: string): Promise<string> {
    const start = await reg().client.request("POST", `/v2/${repo}/blobs/uploads/`);
    expect(start.status, describeResponse("POST", repo, start)).toBe(202);
    const location = new URL(headerValue(start, "location")!, reg().url);
    location.searchParams.set("digest", sha256(bytes));
    const put = await reg().client.request("PUT", location.pathname + location.search, { "content-type": "application/octet-stream" }, bytes);
    expect(put.status, describeResponse("PUT", location.pathname, put)).toBe(201);
    return sha256(bytes);
  }

  /** Pushes an artifact manifest attached to `subject` and returns its digest. */
  async function attach(repo: string, subject: { mediaType: string; digest: string; size: number }, artifactType: string, payload: string, annotations: Record<string, string> = {}) {
    await pushBlob(repo, "{}");
    const layer = await pushBlob(repo, payload);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType,
      config: EMPTY,
      layers: [{ mediaType: "application/octet-stream", digest: layer, size: Buffer.byteLength(payload) }],
      subject,
      annotations,
    });
    const digest = sha256(manifest);
    const res = await reg().client.request("PUT", `/v2/${repo}/manifests/${digest}`, { "content-type": OCI_MANIFEST }, manifest);
    expect(res.status, describeResponse("PUT", digest, res)).toBe(201);
    expect(headerValue(res, "oci-subject")).toBe(subject.digest);
    return digest;
  }

  async function referrers(repo: string, digest: string, query = "") {
    const res = await reg().client.request("GET", `/v2/${repo}/referrers/${digest}${query}`);
    expect(res.status, describeResponse("GET referrers", digest, res)).toBe(200);
    expect(headerValue(res, "content-type")).toBe(OCI_INDEX);
    return { res, index: JSON.parse(res.body.toString("utf8")) as { manifests: { digest: string; artifactType?: string; annotations?: Record<string, string> }[] } };
  }

  it("finds a signature and an SBOM attached to an image pushed by skopeo", async () => {
    const image = fx.digests.layered;
    const subject = { mediaType: OCI_MANIFEST, digest: image.root, size: rootBlob(fx.layered).size };
    const sig = await attach("e2e/ref/layered", subject, "application/vnd.dev.cosign.artifact.sig.v1+json", "signature", { "dev.cosignproject.cosign/signature": "MEUC" });
    const sbom = await attach("e2e/ref/layered", subject, "application/spdx+json", '{"spdxVersion":"SPDX-2.3"}');
    const all = await referrers("e2e/ref/layered", image.root);
    expect(all.index.manifests.map((m) => m.digest).sort()).toEqual([sig, sbom].sort());
    expect(all.index.manifests.find((m) => m.digest === sig)?.annotations).toEqual({ "dev.cosignproject.cosign/signature": "MEUC" });
    const onlySbom = await referrers("e2e/ref/layered", image.root, "?artifactType=application%2Fspdx%2Bjson");
    expect(headerValue(onlySbom.res, "oci-filters-applied")).toBe("artifactType");
    expect(onlySbom.index.manifests.map((m) => m.digest)).toEqual([sbom]);
  });

  it("keeps a multi-arch index's signature across a re-push of the index", async () => {
    const index = fx.digests.multiarch;
    const subject = { mediaType: OCI_INDEX, digest: index.root, size: rootBlob(fx.multiarch).size };
    const sig = await attach("e2e/ref/multiarch", subject, "application/vnd.dev.cosign.artifact.sig.v1+json", "index-signature");
    expect((await referrers("e2e/ref/multiarch", index.root)).index.manifests.map((m) => m.digest)).toEqual([sig]);

    await skopeoPush(skopeo, reg(), fx.layoutDir, fx.tags.multiarch, "e2e/ref/multiarch");
    const head = await reg().client.request("HEAD", `/v2/e2e/ref/multiarch/manifests/${fx.tags.multiarch}`, { accept: OCI_INDEX });
    expect(headerValue(head, "docker-content-digest")).toBe(index.root);
    expect((await referrers("e2e/ref/multiarch", index.root)).index.manifests.map((m) => m.digest)).toEqual([sig]);
    const signature = await reg().client.request("GET", `/v2/e2e/ref/multiarch/manifests/${sig}`, { accept: OCI_MANIFEST });
    expect(signature.status).toBe(200);
    expect(sha256(signature.body)).toBe(sig);
  });
});
