/**
 * OCI Distribution Spec v1.1, conformance workflow category 1, "Pull": what a client pulling by
 * tag or digest sees. The checks follow the official suite's order (blobs, manifests, error
 * codes), written from the spec. Setup pushes one image under a tag and one larger blob.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { bodyBytes, bytesOf, call, errorCode, imageManifest, OCI_MANIFEST, pushBlob, putManifest, sha256, uniqueName, type ErrorBody } from "./helpers";

/** The error codes the spec defines: every 4xx body's first code is one of these. */
const SPEC_ERROR_CODES = [
  "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
  "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
  "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
];

/** The reference the official suite asks for as "a nonexistent manifest": not even a valid tag. */
const INVALID_TAG = ".INVALID_MANIFEST_NAME";

const name = uniqueName("conformance/pull");
const TAG = "tagtest0";
let image: { text: string; digest: string; blobs: string[] };
const blob = bytesOf(4096, 21);
let blobDigest: string;
let missingDigest: string;

beforeAll(async () => {
  image = await imageManifest(name);
  expect((await putManifest(name, TAG, image.text)).status).toBe(201);
  blobDigest = await pushBlob(name, blob);
  missingDigest = await sha256("never pushed anywhere");
});

describe("Pull blobs", () => {
  it("HEAD of a nonexistent blob is 404, without a body", async () => {
    const res = await call(`/v2/${name}/blobs/${missingDigest}`, { method: "HEAD" });
    expect(res.status).toBe(404);
    expect((await bodyBytes(res)).byteLength).toBe(0);
  });

  it("HEAD of an existing blob is 200 with Content-Length and Docker-Content-Digest, without a body", async () => {
    const res = await call(`/v2/${name}/blobs/${blobDigest}`, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe(String(blob.byteLength));
    expect(res.headers.get("Docker-Content-Digest")).toBe(blobDigest);
    expect((await bodyBytes(res)).byteLength).toBe(0);
  });

  it("GET of a nonexistent blob is 404 BLOB_UNKNOWN", async () => {
    const res = await call(`/v2/${name}/blobs/${missingDigest}`);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UNKNOWN");
  });

  it("GET of an existing blob is 200 with its exact bytes, Content-Length and Docker-Content-Digest", async () => {
    const res = await call(`/v2/${name}/blobs/${blobDigest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe(String(blob.byteLength));
    expect(res.headers.get("Docker-Content-Digest")).toBe(blobDigest);
    expect(await bodyBytes(res)).toEqual(blob);
  });

  it("GET with Range: bytes=a-b is 206 with Content-Range and just those bytes", async () => {
    const res = await call(`/v2/${name}/blobs/${blobDigest}`, { headers: { Range: "bytes=100-1123" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 100-1123/${blob.byteLength}`);
    expect(res.headers.get("Content-Length")).toBe("1024");
    expect(await bodyBytes(res)).toEqual(blob.slice(100, 1124));
  });

  it("GET with Range: bytes=a- resumes a download from an offset", async () => {
    const res = await call(`/v2/${name}/blobs/${blobDigest}`, { headers: { Range: "bytes=4000-" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 4000-4095/${blob.byteLength}`);
    expect(await bodyBytes(res)).toEqual(blob.slice(4000));
  });

  it("a Range starting past the end of the blob is 416, with Content-Range giving the blob's size", async () => {
    const res = await call(`/v2/${name}/blobs/${blobDigest}`, { headers: { Range: `bytes=${blob.byteLength}-` } });
    expect(res.status).toBe(416);
    expect(res.headers.get("Content-Range")).toBe(`bytes */${blob.byteLength}`);
  });
});

describe("Pull manifests", () => {
  it("HEAD of a nonexistent manifest is 404, without a body", async () => {
    for (const reference of ["nonexistent", INVALID_TAG, missingDigest]) {
      const res = await call(`/v2/${name}/manifests/${reference}`, { method: "HEAD" });
      expect(res.status, reference).toBe(404);
      expect((await bodyBytes(res)).byteLength, reference).toBe(0);
    }
  });

  it("HEAD by digest is 200 with Docker-Content-Digest, Content-Type and Content-Length, without a body", async () => {
    const res = await call(`/v2/${name}/manifests/${image.digest}`, { method: "HEAD", headers: { Accept: OCI_MANIFEST } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(res.headers.get("Content-Type")).toBe(OCI_MANIFEST);
    expect(res.headers.get("Content-Length")).toBe(String(new TextEncoder().encode(image.text).byteLength));
    expect((await bodyBytes(res)).byteLength).toBe(0);
  });

  it("HEAD by tag is 200 with the digest of the tagged manifest", async () => {
    const res = await call(`/v2/${name}/manifests/${TAG}`, { method: "HEAD", headers: { Accept: OCI_MANIFEST } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
  });

  it("GET of a nonexistent manifest is 404 MANIFEST_UNKNOWN", async () => {
    for (const reference of ["nonexistent", missingDigest]) {
      const res = await call(`/v2/${name}/manifests/${reference}`);
      expect(res.status, reference).toBe(404);
      expect(await errorCode(res), reference).toBe("MANIFEST_UNKNOWN");
    }
  });

  it(`GET under a reference that is not a valid tag (${INVALID_TAG}) is 404 MANIFEST_UNKNOWN`, async () => {
    for (const reference of [INVALID_TAG, "-leading-dash", "t".repeat(129)]) {
      const res = await call(`/v2/${name}/manifests/${reference}`);
      expect(res.status, reference).toBe(404);
      expect(await errorCode(res), reference).toBe("MANIFEST_UNKNOWN");
    }
  });

  it("GET by digest is 200 with the exact bytes pushed, under the pushed media type", async () => {
    const res = await call(`/v2/${name}/manifests/${image.digest}`, { headers: { Accept: OCI_MANIFEST } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe(OCI_MANIFEST);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(await res.text()).toBe(image.text);
  });

  it("GET by tag is 200 with the same bytes and digest", async () => {
    const res = await call(`/v2/${name}/manifests/${TAG}`, { headers: { Accept: OCI_MANIFEST } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(await res.text()).toBe(image.text);
  });
});

describe("Error codes", () => {
  it("a 400 answer carries an OCI error body whose code the spec defines", async () => {
    const res = await putManifest(name, "sha256:totallywrong", "{}");
    expect(res.status).toBe(400);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    const body = (await res.json()) as ErrorBody;
    expect(body.errors.length).toBeGreaterThan(0);
    expect(SPEC_ERROR_CODES).toContain(body.errors[0]!.code);
    expect(typeof body.errors[0]!.message).toBe("string");
  });

  it("a malformed digest is 400 DIGEST_INVALID, for manifests and blobs", async () => {
    for (const path of [`manifests/sha256:xyz`, `blobs/sha256:xyz`]) {
      const res = await call(`/v2/${name}/${path}`);
      expect(res.status, path).toBe(400);
      expect(await errorCode(res), path).toBe("DIGEST_INVALID");
    }
  });
});
