import { describe, expect, it } from "vitest";
import { basic, bytesOf, call, imageManifest, pushBlob, putManifest, RO, sha256, startUpload, uniqueName, type ErrorBody } from "./helpers";

/** Checks that a response carries one well-formed OCI error and returns its code. */
async function expectErrorBody(res: Response, label: string): Promise<string> {
  expect(res.headers.get("Content-Type"), label).toMatch(/^application\/json/);
  expect(res.headers.get("Docker-Distribution-API-Version"), label).toBe("registry/2.0");
  const text = await res.text();
  let body: ErrorBody;
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    throw new Error(`${label}: body is not JSON: ${text.slice(0, 200)}`);
  }
  expect(Array.isArray(body.errors), label).toBe(true);
  expect(body.errors.length, label).toBeGreaterThan(0);
  for (const error of body.errors) {
    expect(Object.keys(error).sort(), label).toEqual(["code", "detail", "message"]);
    expect(error.code, label).toMatch(/^[A-Z_]+$/);
    expect(typeof error.message, label).toBe("string");
  }
  return body.errors[0]!.code;
}

describe("wrong methods", () => {
  it("a method a known path does not support is 405 UNSUPPORTED", async () => {
    const name = uniqueName("err");
    const digest = await pushBlob(name, "x");
    const { location } = await startUpload(name);
    const cases: [string, string][] = [
      ["POST", `/v2/${name}/manifests/latest`],
      ["PATCH", `/v2/${name}/manifests/latest`],
      ["PUT", `/v2/${name}/blobs/${digest}`],
      ["PATCH", `/v2/${name}/blobs/${digest}`],
      ["POST", `/v2/${name}/blobs/${digest}`],
      ["DELETE", `/v2/${name}/tags/list`],
      ["PUT", `/v2/${name}/tags/list`],
      ["POST", location],
      ["DELETE", "/v2/_catalog"],
      ["POST", "/v2/"],
    ];
    for (const [method, path] of cases) {
      const res = await call(path, { method, body: method === "HEAD" ? undefined : "{}" });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(await expectErrorBody(res, `${method} ${path}`)).toBe("UNSUPPORTED");
    }
  });

  it("a 405 names the allowed methods in Allow", async () => {
    const name = uniqueName("err");
    const res = await call(`/v2/${name}/tags/list`, { method: "DELETE" });
    expect(res.status).toBe(405);
    expect(res.headers.get("Allow")).toContain("GET");
  });
});

describe("error bodies", () => {
  it('every error has the {"errors":[{"code","message","detail"}]} shape with Content-Type application/json', async () => {
    const name = uniqueName("err");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);
    const blob = m.blobs[1]!;
    const { location } = await startUpload(name);
    expect((await call(location, { method: "PATCH", body: bytesOf(10) })).status).toBe(202);
    const missing = await sha256("missing");

    const cases: [string, Promise<Response>, number, string][] = [
      ["no credentials", call("/v2/", { auth: null }), 401, "UNAUTHORIZED"],
      ["bad credentials", call(`/v2/${name}/tags/list`, { auth: basic("hello", "x") }), 401, "UNAUTHORIZED"],
      ["read-only push", call(`/v2/${name}/blobs/uploads/`, { method: "POST", auth: RO }), 403, "DENIED"],
      ["unknown blob", call(`/v2/${name}/blobs/${missing}`), 404, "BLOB_UNKNOWN"],
      ["bad digest", call(`/v2/${name}/blobs/sha256:zz`), 400, "DIGEST_INVALID"],
      ["bad range", call(`/v2/${name}/blobs/${blob}`, { headers: { Range: "bytes=99999-" } }), 416, "RANGE_INVALID"],
      ["unknown manifest", call(`/v2/${name}/manifests/nope`), 404, "MANIFEST_UNKNOWN"],
      ["bad name", call("/v2/BAD/manifests/v1"), 400, "NAME_INVALID"],
      ["bad tag", putManifest(name, "-x", m.text), 400, "TAG_INVALID"],
      ["bad manifest", putManifest(name, "v2", "nope"), 400, "MANIFEST_INVALID"],
      ["missing layer", putManifest(uniqueName("err"), "v1", m.text), 400, "MANIFEST_BLOB_UNKNOWN"],
      ["unknown repo", call(`/v2/${uniqueName("err")}/tags/list`), 404, "NAME_UNKNOWN"],
      ["unknown upload", call(`/v2/${name}/blobs/uploads/${crypto.randomUUID()}`), 404, "BLOB_UPLOAD_UNKNOWN"],
      ["wrong upload digest", call(`${location}?digest=${missing}`, { method: "PUT" }), 400, "DIGEST_INVALID"],
      ["wrong method", call(`/v2/${name}/manifests/v1`, { method: "POST" }), 405, "UNSUPPORTED"],
      ["unknown endpoint", call(`/v2/${name}/nothing/here`), 404, "NOT_FOUND"],
      ["bad n", call(`/v2/${name}/tags/list?n=x`), 400, "PAGINATION_NUMBER_INVALID"],
    ];
    for (const [label, pending, status, code] of cases) {
      const res = await pending;
      expect(res.status, label).toBe(status);
      expect(await expectErrorBody(res, label), label).toBe(code);
    }
  });

  it("an out-of-order chunk's 416 is a JSON error too", async () => {
    const name = uniqueName("err");
    const { location } = await startUpload(name);
    const res = await call(location, {
      method: "PATCH",
      body: bytesOf(10),
      headers: { "Content-Range": "100-109", "Content-Length": "10" },
    });
    expect(res.status).toBe(416);
    expect(res.headers.get("Range")).toMatch(/^0-\d+$/);
    await expectErrorBody(res, "out-of-order chunk");
  });

  it("a HEAD error has the status but no body", async () => {
    const name = uniqueName("err");
    const res = await call(`/v2/${name}/manifests/nope`, { method: "HEAD" });
    expect(res.status).toBe(404);
    expect(res.headers.get("Docker-Distribution-API-Version")).toBe("registry/2.0");
    expect(await res.text()).toBe("");
  });
});
