/**
 * OCI Distribution Spec v1.1, conformance workflow category 4, "Content management": deleting
 * tags, manifests and blobs (202, then 404), in the official suite's order, written from the spec.
 */
import { describe, expect, it } from "vitest";
import { artifactManifest, call, errorCode, imageManifest, OCI_MANIFEST, pushBlob, putManifest, sha256, uniqueName } from "./helpers";

/** A repository holding one image under the given tags. */
async function repoWithImage(tags: string[]): Promise<{ name: string; digest: string; size: number }> {
  const name = uniqueName("conformance/manage");
  const image = await imageManifest(name, 51);
  for (const tag of tags) expect((await putManifest(name, tag, image.text)).status).toBe(201);
  return { name, digest: image.digest, size: new TextEncoder().encode(image.text).byteLength };
}

function del(path: string): Promise<Response> {
  return call(path, { method: "DELETE" });
}

async function tags(name: string): Promise<string[]> {
  const res = await call(`/v2/${name}/tags/list`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { tags: string[] }).tags;
}

describe("Manifest delete", () => {
  it("DELETE of a tag is 202: the tag is then 404, the manifest stays under its digest and other tags", async () => {
    const { name, digest } = await repoWithImage(["tagtest0", "keep"]);
    const res = await del(`/v2/${name}/manifests/tagtest0`);
    expect(res.status).toBe(202);
    const gone = await call(`/v2/${name}/manifests/tagtest0`);
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("MANIFEST_UNKNOWN");
    expect((await call(`/v2/${name}/manifests/${digest}`, { headers: { Accept: OCI_MANIFEST } })).status).toBe(200);
    expect((await call(`/v2/${name}/manifests/keep`, { method: "HEAD" })).status).toBe(200);
    expect(await tags(name)).toEqual(["keep"]);
  });

  it("DELETE of a manifest by digest is 202: GET by digest is then 404 MANIFEST_UNKNOWN, and its tags are gone", async () => {
    const { name, digest } = await repoWithImage(["tagtest0", "tagtest1"]);
    expect(await tags(name)).toHaveLength(2);
    const res = await del(`/v2/${name}/manifests/${digest}`);
    expect(res.status).toBe(202);
    const gone = await call(`/v2/${name}/manifests/${digest}`);
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("MANIFEST_UNKNOWN");
    for (const tag of ["tagtest0", "tagtest1"]) expect((await call(`/v2/${name}/manifests/${tag}`, { method: "HEAD" })).status, tag).toBe(404);
    expect(await tags(name)).toEqual([]);
  });

  it("DELETE of a manifest that is not there is 404 MANIFEST_UNKNOWN: deleted, never pushed, or not even a valid tag", async () => {
    const { name, digest } = await repoWithImage(["tagtest0"]);
    expect((await del(`/v2/${name}/manifests/${digest}`)).status).toBe(202);
    for (const reference of [digest, "tagtest0", "never-pushed", await sha256("never pushed"), ".INVALID_MANIFEST_NAME"]) {
      const res = await del(`/v2/${name}/manifests/${reference}`);
      expect(res.status, reference).toBe(404);
      expect(await errorCode(res), reference).toBe("MANIFEST_UNKNOWN");
    }
  });

  it("DELETE of a referrer by digest takes it out of its subject's referrers", async () => {
    const { name, digest, size } = await repoWithImage(["v1"]);
    const sig = artifactManifest({ digest, size }, "application/vnd.example.sig");
    const sigDigest = await sha256(sig);
    expect((await putManifest(name, sigDigest, sig)).status).toBe(201);
    const listed = async () => ((await (await call(`/v2/${name}/referrers/${digest}`)).json()) as { manifests: { digest: string }[] }).manifests;
    expect((await listed()).map((m) => m.digest)).toEqual([sigDigest]);
    expect((await del(`/v2/${name}/manifests/${sigDigest}`)).status).toBe(202);
    expect(await listed()).toEqual([]);
  });
});

describe("Blob delete", () => {
  it("DELETE of a blob is 202: GET is then 404 BLOB_UNKNOWN", async () => {
    const name = uniqueName("conformance/manage");
    const digest = await pushBlob(name, "a blob to delete");
    const res = await del(`/v2/${name}/blobs/${digest}`);
    expect(res.status).toBe(202);
    const gone = await call(`/v2/${name}/blobs/${digest}`);
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("BLOB_UNKNOWN");
    expect((await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
  });

  it("DELETE of a blob that is not there is 404 BLOB_UNKNOWN", async () => {
    const name = uniqueName("conformance/manage");
    const digest = await pushBlob(name, "deleted twice");
    expect((await del(`/v2/${name}/blobs/${digest}`)).status).toBe(202);
    for (const missing of [digest, await sha256("never pushed")]) {
      const res = await del(`/v2/${name}/blobs/${missing}`);
      expect(res.status, missing).toBe(404);
      expect(await errorCode(res), missing).toBe("BLOB_UNKNOWN");
    }
  });
});
