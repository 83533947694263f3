import { describe, expect, it } from "vitest";
import { basic, call, errorCode, imageManifest, putManifest, RO, startUpload, uniqueName, type ErrorBody } from "./helpers";

const API_VERSION = "registry/2.0";

describe("authentication", () => {
  it("refuses a request without credentials with a Basic challenge and an UNAUTHORIZED body", async () => {
    const res = await call("/v2/", { auth: null });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toMatch(/^Basic realm="[^"]+"/);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(res.headers.get("Docker-Distribution-API-Version")).toBe(API_VERSION);
    const body = (await res.json()) as ErrorBody;
    expect(body.errors[0]?.code).toBe("UNAUTHORIZED");
  });

  it("challenges requests for repository resources too", async () => {
    const res = await call("/v2/some/repo/tags/list", { auth: null });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toMatch(/^Basic realm="[^"]+"/);
    expect(await errorCode(res)).toBe("UNAUTHORIZED");
  });

  it("refuses a wrong password", async () => {
    const res = await call("/v2/", { auth: basic("hello", "wrong") });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toMatch(/^Basic realm="/);
    expect(await errorCode(res)).toBe("UNAUTHORIZED");
  });

  it("refuses a wrong user name", async () => {
    const res = await call("/v2/", { auth: basic("nobody", "world") });
    expect(res.status).toBe(401);
    expect(await errorCode(res)).toBe("UNAUTHORIZED");
  });

  it("refuses the read-only password given with the read-write user name", async () => {
    const res = await call("/v2/", { auth: basic("hello", "pull-only") });
    expect(res.status).toBe(401);
  });

  it("refuses a malformed Authorization header", async () => {
    expect((await call("/v2/", { auth: "Basic !!!not-base64!!!" })).status).toBe(401);
    expect((await call("/v2/", { auth: "Bearer abc.def.ghi" })).status).toBe(401);
    expect((await call("/v2/", { auth: `Basic ${btoa("no-colon-here")}` })).status).toBe(401);
  });

  it("accepts Basic credentials whose standard base64 contains + and /", async () => {
    const auth = basic("alice", "pa>ss?word");
    expect(auth).toContain("+");
    expect(auth).toContain("/");
    const env = { USERNAME: "alice", PASSWORD: "pa>ss?word" };
    const res = await call("/v2/", { auth, env });
    expect(res.status).toBe(200);
    // And the credentials work for real work, not just the probe.
    const name = uniqueName("auth");
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", auth, env });
    expect(start.status).toBe(202);
  });

  it("accepts a password containing a colon and non-ASCII characters", async () => {
    const env = { USERNAME: "jürgen", PASSWORD: "pa:ss:wörd" };
    expect((await call("/v2/", { auth: basic("jürgen", "pa:ss:wörd"), env })).status).toBe(200);
    expect((await call("/v2/", { auth: basic("jürgen", "pa"), env })).status).toBe(401);
  });

  it("answers GET /v2/ and HEAD /v2/ with 200 for a valid login", async () => {
    const get = await call("/v2/");
    expect(get.status).toBe(200);
    expect(get.headers.get("Docker-Distribution-API-Version")).toBe(API_VERSION);
    const head = await call("/v2/", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Docker-Distribution-API-Version")).toBe(API_VERSION);
    expect(await head.text()).toBe("");
    expect((await call("/v2")).status).toBe(200);
  });

  it("lets the read-only user log in", async () => {
    const res = await call("/v2/", { auth: RO });
    expect(res.status).toBe(200);
  });

  it("answers GET / without credentials (health check)", async () => {
    const res = await call("/", { auth: null });
    expect(res.status).toBe(200);
  });

  it("answers other unknown paths with 401 without credentials and 404 with them", async () => {
    const anonymous = await call("/metrics", { auth: null });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("WWW-Authenticate")).toMatch(/^Basic realm="/);
    const authed = await call("/metrics");
    expect(authed.status).toBe(404);
    const unknownV2 = await call("/v2/some/repo/whatever");
    expect(unknownV2.status).toBe(404);
    expect(unknownV2.headers.get("Docker-Distribution-API-Version")).toBe(API_VERSION);
  });

  it("refuses everything when no credentials are configured", async () => {
    const env = { USERNAME: "", PASSWORD: "", READONLY_USERNAME: "", READONLY_PASSWORD: "" };
    for (const auth of [null, basic("hello", "world"), basic("", ""), basic("reader", "pull-only")]) {
      const probe = await call("/v2/", { auth, env });
      expect(probe.status).toBe(401);
      expect(await errorCode(probe)).toBe("UNAUTHORIZED");
      const tags = await call("/v2/any/repo/tags/list", { auth, env });
      expect(tags.status).toBe(401);
      const push = await call("/v2/any/repo/blobs/uploads/", { method: "POST", auth, env });
      expect(push.status).toBe(401);
    }
  });

  it("answers a JSON 5xx error, not a crash, when the REGISTRY bucket is not bound", async () => {
    const res = await call("/v2/", { env: { REGISTRY: undefined } });
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(res.status).toBeLessThan(600);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(res.headers.get("Docker-Distribution-API-Version")).toBe(API_VERSION);
    const body = (await res.json()) as ErrorBody;
    expect(body.errors[0]?.code).toEqual(expect.any(String));
    const pull = await call("/v2/foo/manifests/latest", { env: { REGISTRY: undefined } });
    expect(pull.status).toBeGreaterThanOrEqual(500);
  });

  it("sends Docker-Distribution-API-Version on every /v2/ response, errors and 401s included", async () => {
    const name = uniqueName("auth");
    const responses = [
      await call("/v2/"),
      await call("/v2/", { auth: null }),
      await call("/v2/", { auth: basic("hello", "nope") }),
      await call(`/v2/${name}/manifests/latest`),
      await call(`/v2/${name}/manifests/latest`, { method: "HEAD" }),
      await call(`/v2/${name}/blobs/sha256:${"0".repeat(64)}`),
      await call(`/v2/${name}/blobs/uploads/`, { method: "POST", auth: RO }),
      await call(`/v2/${name}/tags/list`),
      await call("/v2/_catalog"),
      await call("/v2/Bad/manifests/latest"),
    ];
    for (const res of responses) expect(res.headers.get("Docker-Distribution-API-Version"), `status ${res.status}`).toBe(API_VERSION);
  });
});

describe("read-only user", () => {
  it("can pull: GET and HEAD manifests, blobs and tag lists", async () => {
    const name = uniqueName("ro");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);

    const manifest = await call(`/v2/${name}/manifests/v1`, { auth: RO });
    expect(manifest.status).toBe(200);
    expect(await manifest.text()).toBe(m.text);
    expect((await call(`/v2/${name}/manifests/${m.digest}`, { method: "HEAD", auth: RO })).status).toBe(200);
    expect((await call(`/v2/${name}/blobs/${m.blobs[1]}`, { auth: RO })).status).toBe(200);
    expect((await call(`/v2/${name}/blobs/${m.blobs[1]}`, { method: "HEAD", auth: RO })).status).toBe(200);
    expect((await call(`/v2/${name}/tags/list`, { auth: RO })).status).toBe(200);
    expect((await call("/v2/_catalog", { auth: RO })).status).toBe(200);
  });

  it("cannot push or delete: PUT, POST, PATCH and DELETE get 403 DENIED", async () => {
    const name = uniqueName("ro");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);
    const { location } = await startUpload(name);

    const attempts: [string, string, BodyInit | undefined][] = [
      ["PUT", `/v2/${name}/manifests/v2`, m.text],
      ["DELETE", `/v2/${name}/manifests/v1`, undefined],
      ["DELETE", `/v2/${name}/manifests/${m.digest}`, undefined],
      ["POST", `/v2/${name}/blobs/uploads/`, undefined],
      ["PATCH", location, "abc"],
      ["PUT", `${location}?digest=${m.blobs[0]}`, undefined],
      ["DELETE", location, undefined],
      ["DELETE", `/v2/${name}/blobs/${m.blobs[0]}`, undefined],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(path, { method, body, auth: RO, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(await errorCode(res), `${method} ${path}`).toBe("DENIED");
    }
    // Nothing changed.
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(200);
    expect((await call(`/v2/${name}/manifests/v2`)).status).toBe(404);
    expect((await call(`/v2/${name}/blobs/${m.blobs[0]}`, { method: "HEAD" })).status).toBe(200);
    expect((await call(location)).status).toBe(204);
  });
});
