import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { artifactManifest as artifact, call, errorCode, imageManifest, OCI_INDEX, OCI_MANIFEST, pushBlob, putManifest, sha256 } from "./helpers";

async function referrers(name: string, digest: string, query = "") {
  const res = await call(`/v2/${name}/referrers/${digest}${query}`);
  return { res, body: (await res.json()) as { schemaVersion: number; mediaType: string; manifests: any[] } };
}

describe("referrers", () => {
  it("lists a signature and an SBOM attached to an image, with artifactType and annotations", async () => {
    const name = "ref/app";
    const image = await imageManifest(name);
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    const subject = { digest: image.digest, size: new TextEncoder().encode(image.text).byteLength };

    const sigLayer = await pushBlob(name, "signature-bytes");
    const sig = artifact(subject, "application/vnd.dev.cosign.artifact.sig.v1+json", [
      { mediaType: "application/vnd.dev.cosign.simplesigning.v1+json", digest: sigLayer, size: 15 },
    ], { "org.example.signed-by": "ci" });
    const put = await putManifest(name, await sha256(sig), sig);
    expect(put.status).toBe(201);
    expect(put.headers.get("OCI-Subject")).toBe(image.digest);

    // An SBOM with no layers and no artifactType: listed under its config media type.
    const sbomConfig = await pushBlob(name, '{"spdx":true}');
    const sbom = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/spdx+json", digest: sbomConfig, size: 13 },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
    });
    expect((await putManifest(name, await sha256(sbom), sbom)).status).toBe(201);

    const { res, body } = await referrers(name, image.digest);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe(OCI_INDEX);
    expect(res.headers.get("OCI-Filters-Applied")).toBeNull();
    expect(body.schemaVersion).toBe(2);
    expect(body.mediaType).toBe(OCI_INDEX);
    const byType = Object.fromEntries(body.manifests.map((m) => [m.artifactType, m]));
    expect(byType["application/vnd.dev.cosign.artifact.sig.v1+json"]).toEqual({
      mediaType: OCI_MANIFEST,
      digest: await sha256(sig),
      size: new TextEncoder().encode(sig).byteLength,
      artifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
      annotations: { "org.example.signed-by": "ci" },
    });
    expect(byType["application/spdx+json"]?.digest).toBe(await sha256(sbom));

    const filtered = await referrers(name, image.digest, "?artifactType=application/spdx+json");
    expect(filtered.res.headers.get("OCI-Filters-Applied")).toBe("artifactType");
    expect(filtered.body.manifests.map((m) => m.digest)).toEqual([await sha256(sbom)]);
  });

  it("accepts a referrer before its subject exists, and answers an empty index for unknown subjects", async () => {
    const name = "ref/early";
    const missing = `sha256:${"ab".repeat(32)}`;
    const sig = artifact({ digest: missing, size: 100 }, "application/example");
    const put = await putManifest(name, await sha256(sig), sig);
    expect(put.status).toBe(201);
    expect(put.headers.get("OCI-Subject")).toBe(missing);
    expect((await referrers(name, missing)).body.manifests.map((m) => m.digest)).toEqual([await sha256(sig)]);

    const unknown = await referrers("ref/nothing-here", `sha256:${"cd".repeat(32)}`);
    expect(unknown.res.status).toBe(200);
    expect(unknown.body.manifests).toEqual([]);
  });

  it("paginates with n and a Link header", async () => {
    const name = "ref/many";
    const subject = { digest: `sha256:${"ef".repeat(32)}`, size: 10 };
    const digests: string[] = [];
    for (let i = 0; i < 5; i++) {
      const m = artifact(subject, "application/example", [], { i: String(i) });
      digests.push(await sha256(m));
      expect((await putManifest(name, await sha256(m), m)).status).toBe(201);
    }
    digests.sort();
    const first = await referrers(name, subject.digest, "?n=2");
    expect(first.body.manifests.map((m) => m.digest)).toEqual(digests.slice(0, 2));
    const link = first.res.headers.get("Link");
    expect(link).toBe(`</v2/${name}/referrers/${subject.digest}?n=2&last=${digests[1]!.replace(":", "%3A")}>; rel="next"`);
    const next = await call(link!.slice(1, link!.indexOf(">")));
    const page2 = (await next.json()) as { manifests: { digest: string }[] };
    expect(page2.manifests.map((m) => m.digest)).toEqual(digests.slice(2, 4));
    const last = await referrers(name, subject.digest, `?n=2&last=${digests[3]}`);
    expect(last.body.manifests.map((m) => m.digest)).toEqual(digests.slice(4));
    expect(last.res.headers.get("Link")).toBeNull();
  });

  it("indexes an image index with a subject, and forgets a referrer deleted by digest", async () => {
    const name = "ref/index";
    const image = await imageManifest(name);
    await putManifest(name, image.digest, image.text);
    const child = await imageManifest(name, 7);
    await putManifest(name, child.digest, child.text);
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      artifactType: "application/vnd.example.bundle",
      manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.text.length }],
      subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.text.length },
    });
    const indexDigest = await sha256(index);
    expect((await putManifest(name, "bundle", index, OCI_INDEX)).status).toBe(201);
    expect((await referrers(name, image.digest)).body.manifests).toEqual([
      { mediaType: OCI_INDEX, digest: indexDigest, size: index.length, artifactType: "application/vnd.example.bundle" },
    ]);
    // Deleting the tag keeps the entry; deleting the digest removes it.
    expect((await call(`/v2/${name}/manifests/bundle`, { method: "DELETE" })).status).toBe(202);
    expect((await referrers(name, image.digest)).body.manifests).toHaveLength(1);
    expect((await call(`/v2/${name}/manifests/${indexDigest}`, { method: "DELETE" })).status).toBe(202);
    expect((await referrers(name, image.digest)).body.manifests).toEqual([]);
  });

  it("reads referrer entries written by serverless-registry (no metadata) and skips broken ones", async () => {
    const name = "ref/legacy";
    const subject = `sha256:${"12".repeat(32)}`;
    const good = `sha256:${"34".repeat(32)}`;
    const descriptor = { mediaType: OCI_MANIFEST, digest: good, size: 321, artifactType: "application/old" };
    await env.REGISTRY.put(`${name}/_referrers/${subject}/${good}`, JSON.stringify(descriptor), { httpMetadata: { contentType: "application/json" } });
    await env.REGISTRY.put(`${name}/_referrers/${subject}/sha256:${"56".repeat(32)}`, "not json");
    await env.REGISTRY.put(`${name}/_referrers/${subject}/sha256:${"78".repeat(32)}`, JSON.stringify({ ...descriptor, digest: `sha256:${"99".repeat(32)}` }));
    expect((await referrers(name, subject)).body.manifests).toEqual([descriptor]);
  });

  it("rejects invalid digests and pagination values", async () => {
    expect(await errorCode(await call(`/v2/ref/app/referrers/sha256:nothex`))).toBe("DIGEST_INVALID");
    expect(await errorCode(await call(`/v2/ref/app/referrers/sha256:${"AB".repeat(32)}`))).toBe("DIGEST_INVALID");
    const res = await call(`/v2/ref/app/referrers/sha256:${"ab".repeat(32)}?n=-1`);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("PAGINATION_NUMBER_INVALID");
  });

  it("accepts foreign (non-distributable) layers that are not in the registry", async () => {
    const name = "ref/windows";
    const config = await pushBlob(name, '{"os":"windows"}');
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: config, size: 16 },
      layers: [{
        mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        digest: `sha256:${"fa".repeat(32)}`,
        size: 123456,
        urls: ["https://example.invalid/layer"],
      }],
    });
    const res = await putManifest(name, "ltsc", manifest, "application/vnd.docker.distribution.manifest.v2+json");
    expect(res.status, await res.clone().text()).toBe(201);
  });
});
