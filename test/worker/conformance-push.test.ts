/**
 * OCI Distribution Spec v1.1, conformance workflow category 2, "Push": blob uploads (streamed,
 * monolithic, chunked), cross-repository mounts and manifest uploads, in the official suite's
 * order, written from the spec.
 */
import { describe, expect, it } from "vitest";
import {
  artifactManifest,
  bodyBytes,
  bytesOf,
  call,
  EMPTY_CONFIG,
  errorCode,
  imageManifest,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  putManifest,
  sha256,
  startUpload,
  uniqueName,
  withQuery,
} from "./helpers";

const OCTETS = { "Content-Type": "application/octet-stream" };

/** Sends a PATCH chunk with Content-Range and Content-Length, as a chunked client does. */
function patchChunk(location: string, chunk: Uint8Array, start: number): Promise<Response> {
  const range = `${start}-${start + chunk.byteLength - 1}`;
  return call(location, {
    method: "PATCH",
    body: chunk,
    headers: { ...OCTETS, "Content-Range": range, "Content-Length": String(chunk.byteLength) },
  });
}

/** The blob at a Location a push answered with. */
async function fetchBlob(location: string): Promise<Uint8Array> {
  const res = await call(location);
  expect(res.status, location).toBe(200);
  return bodyBytes(res);
}

/** Bytes of a manifest's text. */
function sizeOf(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}

/** Pushes a blob and returns its descriptor. */
async function pushed(name: string, mediaType: string, content: string): Promise<{ mediaType: string; digest: string; size: number }> {
  return { mediaType, digest: await pushBlob(name, content), size: sizeOf(content) };
}

describe("Blob upload streamed", () => {
  it("POST opens a session, PATCH with the blob in the body is 202, PUT ?digest= without a body is 201", async () => {
    const name = uniqueName("conformance/push");
    const blob = bytesOf(3000, 31);
    const digest = await sha256(blob);
    const { location } = await startUpload(name);
    expect(location).toBeTruthy();

    const patch = await call(location, { method: "PATCH", body: blob, headers: OCTETS });
    expect(patch.status).toBe(202);
    expect(patch.headers.get("Location")).toBeTruthy();
    expect(patch.headers.get("Range")).toBe(`0-${blob.byteLength - 1}`);

    const put = await call(withQuery(patch.headers.get("Location")!, { digest }), { method: "PUT", headers: { ...OCTETS, "Content-Length": "0" } });
    expect(put.status).toBe(201);
    expect(put.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await fetchBlob(put.headers.get("Location")!)).toEqual(blob);
  });
});

describe("Blob upload monolithic", () => {
  it("GET of a blob not yet pushed is 404", async () => {
    const res = await call(`/v2/${uniqueName("conformance/push")}/blobs/${await sha256("not yet")}`);
    expect(res.status).toBe(404);
  });

  it("POST ?digest= with the whole blob is 201 with Location, and the blob is then there", async () => {
    const name = uniqueName("conformance/push");
    const config = JSON.stringify({ architecture: "amd64", os: "linux", conformance: "post" });
    const digest = await sha256(config);
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${digest}`, { method: "POST", body: config, headers: OCTETS });
    expect(res.status).toBe(201);
    expect(res.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(new TextDecoder().decode(await fetchBlob(res.headers.get("Location")!))).toBe(config);
  });

  it("POST then PUT ?digest= with the whole blob is 201 with Location and Docker-Content-Digest", async () => {
    const name = uniqueName("conformance/push");
    const layer = bytesOf(5000, 32);
    const digest = await sha256(layer);
    const post = await call(`/v2/${name}/blobs/uploads/`, { method: "POST" });
    expect(post.status).toBe(202);
    const put = await call(withQuery(post.headers.get("Location")!, { digest }), { method: "PUT", body: layer, headers: OCTETS });
    expect(put.status).toBe(201);
    expect(put.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await fetchBlob(put.headers.get("Location")!)).toEqual(layer);
  });

  it("a digest that does not match the bytes is 400 DIGEST_INVALID, and nothing is stored", async () => {
    const name = uniqueName("conformance/push");
    const claimed = await sha256("other bytes");
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${claimed}`, { method: "POST", body: "these bytes", headers: OCTETS });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
    expect((await call(`/v2/${name}/blobs/${claimed}`, { method: "HEAD" })).status).toBe(404);
  });
});

describe("Blob upload chunked", () => {
  /** Two chunks as the official suite sizes them: each at least the OCI-Chunk-Min-Length asked for. */
  async function chunkedBlob(name: string) {
    const post = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", headers: { "Content-Length": "0" } });
    expect(post.status).toBe(202);
    const min = Number(post.headers.get("OCI-Chunk-Min-Length") ?? "0");
    const first = Math.max(min, 1000);
    const blob = bytesOf(first * 2 - 2, 33);
    return { location: post.headers.get("Location")!, blob, chunk1: blob.subarray(0, first), chunk2: blob.subarray(first) };
  }

  it("a chunk that does not start where the upload stands (out of order) is 416", { timeout: 60_000 }, async () => {
    const { location, chunk1, chunk2 } = await chunkedBlob(uniqueName("conformance/push"));
    const res = await patchChunk(location, chunk2, chunk1.byteLength);
    expect(res.status).toBe(416);
  });

  it("chunks with Content-Range: 202 with Range after each, a retried chunk is 416, GET tells where the upload stands, PUT ?digest= is 201", { timeout: 60_000 }, async () => {
    const name = uniqueName("conformance/push");
    const { location, blob, chunk1, chunk2 } = await chunkedBlob(name);

    const first = await patchChunk(location, chunk1, 0);
    expect(first.status).toBe(202);
    expect(first.headers.get("Range")).toBe(`0-${chunk1.byteLength - 1}`);

    // The same chunk again, at the session's first Location: the registry already holds it.
    expect((await patchChunk(location, chunk1, 0)).status).toBe(416);

    const status = await call(location);
    expect(status.status).toBe(204);
    expect(status.headers.get("Location")).toBeTruthy();
    expect(status.headers.get("Range")).toBe(`0-${chunk1.byteLength - 1}`);

    const second = await patchChunk(status.headers.get("Location")!, chunk2, chunk1.byteLength);
    expect(second.status).toBe(202);
    expect(second.headers.get("Location")).toBeTruthy();
    expect(second.headers.get("Range")).toBe(`0-${blob.byteLength - 1}`);

    const digest = await sha256(blob);
    const put = await call(withQuery(second.headers.get("Location")!, { digest }), { method: "PUT", headers: { ...OCTETS, "Content-Length": "0" } });
    expect(put.status).toBe(201);
    expect(put.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(await sha256(await fetchBlob(put.headers.get("Location")!))).toBe(digest);
  });

  it("the last chunk may travel in the closing PUT, with its Content-Range", { timeout: 60_000 }, async () => {
    const name = uniqueName("conformance/push");
    const { location, blob, chunk1, chunk2 } = await chunkedBlob(name);
    const first = await patchChunk(location, chunk1, 0);
    expect(first.status).toBe(202);
    const digest = await sha256(blob);
    const put = await call(withQuery(first.headers.get("Location")!, { digest }), {
      method: "PUT",
      body: chunk2,
      headers: { ...OCTETS, "Content-Range": `${chunk1.byteLength}-${blob.byteLength - 1}`, "Content-Length": String(chunk2.byteLength) },
    });
    expect(put.status).toBe(201);
    expect(await sha256(await fetchBlob(put.headers.get("Location")!))).toBe(digest);
  });
});

describe("Cross-repository blob mount", () => {
  it("a mount without from opens a session in the target repository (202 with Location)", async () => {
    const target = uniqueName("conformance/mount");
    const res = await call(`/v2/${target}/blobs/uploads/?mount=${await sha256("dummy")}`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(res.headers.get("Location")).toMatch(new RegExp(`^/v2/${target}/blobs/uploads/`));
  });

  it("a mount from a repository holding the blob is 201 with Location in the target, where GET is 200", async () => {
    const source = uniqueName("conformance/push");
    const target = uniqueName("conformance/mount");
    const blob = bytesOf(2000, 34);
    const digest = await pushBlob(source, blob);
    const res = await call(`/v2/${target}/blobs/uploads/?mount=${digest}&from=${source}`, { method: "POST" });
    expect(res.status).toBe(201);
    expect(res.headers.get("Location")).toBe(`/v2/${target}/blobs/${digest}`);
    expect(res.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await fetchBlob(res.headers.get("Location")!)).toEqual(blob);
  });

  it("a mount of a blob the source does not hold opens a session in the target (202)", async () => {
    const source = uniqueName("conformance/push");
    const target = uniqueName("conformance/mount");
    const res = await call(`/v2/${target}/blobs/uploads/?mount=${await sha256("nowhere")}&from=${source}`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(res.headers.get("Location")).toMatch(new RegExp(`^/v2/${target}/blobs/uploads/`));
  });
});

describe("Manifest upload", () => {
  it("GET of a nonexistent manifest is 404", async () => {
    expect((await call(`/v2/${uniqueName("conformance/push")}/manifests/.INVALID_MANIFEST_NAME`)).status).toBe(404);
  });

  it("PUT under four tags is 201 each, with Location and Docker-Content-Digest; GET by digest is 200", async () => {
    const name = uniqueName("conformance/push");
    const image = await imageManifest(name, 35);
    for (const tag of ["test0", "test1", "test2", "test3"]) {
      const res = await putManifest(name, tag, image.text);
      expect(res.status, tag).toBe(201);
      expect(res.headers.get("Location"), tag).toBe(`/v2/${name}/manifests/${image.digest}`);
      expect(res.headers.get("Docker-Content-Digest"), tag).toBe(image.digest);
    }
    expect((await call(`/v2/${name}/manifests/${image.digest}`, { headers: { Accept: OCI_MANIFEST } })).status).toBe(200);
  });

  it("an image manifest with no layers is accepted", async () => {
    const name = uniqueName("conformance/push");
    const config = await pushed(name, "application/vnd.oci.image.config.v1+json", '{"architecture":"amd64","os":"linux"}');
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] });
    expect((await putManifest(name, "emptylayer", manifest)).status).toBe(201);
  });

  it("artifacts are accepted: the artifact type in the config media type, or in artifactType with the empty config", async () => {
    const name = uniqueName("conformance/push");
    const config = await pushed(name, "application/vnd.example.config-type", '{"kind":"artifact"}');
    const layer = await pushed(name, "application/octet-stream", "artifact payload");
    const inConfig = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] });
    expect((await putManifest(name, await sha256(inConfig), inConfig)).status).toBe(201);
    const empty = await pushed(name, EMPTY_CONFIG.mediaType, "{}");
    const inArtifactType = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: "application/vnd.example.artifact-type",
      config: empty,
      layers: [layer],
    });
    expect((await putManifest(name, await sha256(inArtifactType), inArtifactType)).status).toBe(201);
  });

  it("an image index, and an index of that index, are accepted", async () => {
    const name = uniqueName("conformance/push");
    const image = await imageManifest(name, 36);
    expect((await putManifest(name, "image", image.text)).status).toBe(201);
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      artifactType: "application/vnd.example.index",
      manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: sizeOf(image.text) }],
    });
    const put = await putManifest(name, await sha256(index), index, OCI_INDEX);
    expect(put.status).toBe(201);
    const nested = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_INDEX, digest: await sha256(index), size: sizeOf(index) }],
    });
    expect((await putManifest(name, await sha256(nested), nested, OCI_INDEX)).status).toBe(201);
    const get = await call(`/v2/${name}/manifests/${await sha256(nested)}`, { headers: { Accept: OCI_INDEX } });
    expect(get.headers.get("Content-Type")).toBe(OCI_INDEX);
  });

  it("a manifest whose subject is not in the registry (dangling) is 201 with OCI-Subject", async () => {
    const name = uniqueName("conformance/push");
    const subject = { digest: await sha256("a subject never pushed"), size: 123 };
    const manifest = artifactManifest(subject, "application/vnd.example.sig");
    const res = await putManifest(name, await sha256(manifest), manifest);
    expect(res.status).toBe(201);
    expect(res.headers.get("OCI-Subject")).toBe(subject.digest);
  });

  it("an index with a subject is 201 with OCI-Subject too", async () => {
    const name = uniqueName("conformance/push");
    const image = await imageManifest(name, 37);
    expect((await putManifest(name, "image", image.text)).status).toBe(201);
    const subject = { mediaType: OCI_MANIFEST, digest: image.digest, size: sizeOf(image.text) };
    const index = JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, artifactType: "application/vnd.example.bundle", manifests: [subject], subject });
    const res = await putManifest(name, await sha256(index), index, OCI_INDEX);
    expect(res.status).toBe(201);
    expect(res.headers.get("OCI-Subject")).toBe(image.digest);
  });

  it("a manifest referencing a blob the repository lacks is 400 MANIFEST_BLOB_UNKNOWN", async () => {
    const name = uniqueName("conformance/push");
    const config = await pushed(name, "application/vnd.oci.image.config.v1+json", '{"os":"linux"}');
    const missing = { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: await sha256("missing layer"), size: 13 };
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [missing] });
    const res = await putManifest(name, "v1", manifest);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_BLOB_UNKNOWN");
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(404);
  });

  it("a body that is not a valid manifest is 400 MANIFEST_INVALID", async () => {
    const name = uniqueName("conformance/push");
    for (const body of ["not json", JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] })]) {
      const res = await putManifest(name, "v1", body);
      expect(res.status, body).toBe(400);
      expect(await errorCode(res), body).toBe("MANIFEST_INVALID");
    }
  });

  it("PUT under an invalid tag is 400 TAG_INVALID", async () => {
    const name = uniqueName("conformance/push");
    const image = await imageManifest(name, 38);
    const res = await putManifest(name, ".INVALID_MANIFEST_NAME", image.text);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("TAG_INVALID");
  });

  it("PUT by a digest the body does not have is 400 DIGEST_INVALID", async () => {
    const name = uniqueName("conformance/push");
    const image = await imageManifest(name, 39);
    const res = await putManifest(name, await sha256("something else"), image.text);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
  });
});
