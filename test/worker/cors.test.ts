import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { call, errorCode, imageManifest, keysUnder, ORIGIN, pushBlob, putManifest, uniqueName, type ErrorBody } from "./helpers";

const UI = "https://ui.example";
const EVIL = "https://evil.example";
const named = { CORS_ORIGINS: `${UI}, https://other.example` };
const any = { CORS_ORIGINS: "*" };

/** A preflight as a browser sends it. */
function preflight(path: string, origin: string, env: Record<string, string>, method = "GET", headers = "authorization") {
  return call(path, {
    method: "OPTIONS",
    auth: null,
    env,
    headers: { Origin: origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers },
  });
}

/** The comma-separated values of a header, lower-cased. */
function values(response: Response, header: string): string[] {
  return (response.headers.get(header) ?? "")
    .split(",")
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v.length > 0);
}

/** Pushes a tagged image and a stray blob; returns the manifest's digest and the stray blob's. */
async function seeded(name: string) {
  const image = await imageManifest(name);
  expect((await putManifest(name, "v1", image.text)).status).toBe(201);
  const stray = await pushBlob(name, `stray blob of ${name}`);
  return { image, stray };
}

describe("CORS_ORIGINS parsing", () => {
  it("keeps * apart from origins listed by name, normalised as browsers send them", () => {
    const config = parseConfig({ CORS_ORIGINS: " *, https://UI.example/ ,http://localhost:8080, https://ui.example:443" });
    expect(config.cors.anyOrigin).toBe(true);
    expect([...config.cors.origins].sort()).toEqual(["http://localhost:8080", "https://ui.example"]);
    expect(config.warnings).toEqual([]);
  });

  it("ignores null and anything that is not an origin, with a warning", () => {
    const config = parseConfig({ CORS_ORIGINS: "null, https://ui.example/path, ui.example, https://ok.example" });
    expect(config.cors.anyOrigin).toBe(false);
    expect([...config.cors.origins]).toEqual(["https://ok.example"]);
    expect(config.warnings).toHaveLength(3);
    expect(config.warnings[0]).toContain('"null"');
  });
});

describe("CORS answers", () => {
  it("* answers a literal * without credentials, and exposes the registry's headers", async () => {
    const res = await call("/v2/_catalog?n=1", { env: any, headers: { Origin: EVIL } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Allow-Credentials")).toBeNull();
    const exposed = values(res, "Access-Control-Expose-Headers");
    for (const h of ["docker-content-digest", "location", "range", "link", "oci-subject", "oci-filters-applied", "docker-upload-uuid", "www-authenticate", "content-range"]) {
      expect(exposed).toContain(h);
    }
    // On errors too, so a page can read what went wrong.
    const unauthorized = await call("/v2/", { auth: null, env: any, headers: { Origin: EVIL } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(unauthorized.headers.get("Access-Control-Allow-Credentials")).toBeNull();
  });

  it("an origin listed by name gets itself back, credentials and Vary: Origin, on answers and on errors", async () => {
    const ok = await call("/v2/_catalog?n=1", { env: named, headers: { Origin: UI } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("Access-Control-Allow-Origin")).toBe(UI);
    expect(ok.headers.get("Access-Control-Allow-Credentials")).toBe("true");
    expect(values(ok, "Vary")).toContain("origin");
    const exposed = values(ok, "Access-Control-Expose-Headers");
    for (const h of ["docker-content-digest", "link", "www-authenticate"]) expect(exposed).toContain(h);
    const unauthorized = await call("/v2/", { auth: null, env: named, headers: { Origin: UI } });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("Access-Control-Allow-Origin")).toBe(UI);
    expect(unauthorized.headers.get("Access-Control-Allow-Credentials")).toBe("true");
  });

  it("with * and names, only the names get credentials", async () => {
    const env = { CORS_ORIGINS: `*, ${UI}` };
    const listed = await call("/v2/_catalog?n=1", { env, headers: { Origin: UI } });
    expect(listed.headers.get("Access-Control-Allow-Origin")).toBe(UI);
    expect(listed.headers.get("Access-Control-Allow-Credentials")).toBe("true");
    const other = await call("/v2/_catalog?n=1", { env, headers: { Origin: EVIL } });
    expect(other.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(other.headers.get("Access-Control-Allow-Credentials")).toBeNull();
    expect(values(other, "Vary")).toContain("origin");
  });

  it("says nothing to other origins, or when not configured", async () => {
    const stranger = await call("/v2/", { env: named, headers: { Origin: EVIL } });
    expect(stranger.status).toBe(200);
    expect(stranger.headers.get("Access-Control-Allow-Origin")).toBeNull();
    expect(stranger.headers.get("Access-Control-Allow-Credentials")).toBeNull();
    const off = await call("/v2/", { headers: { Origin: UI } });
    expect(off.headers.get("Access-Control-Allow-Origin")).toBeNull();
    // Null is never trusted by name.
    const nullOrigin = await call("/v2/", { env: { CORS_ORIGINS: "null" }, headers: { Origin: "null" } });
    expect(nullOrigin.headers.get("Access-Control-Allow-Origin")).toBeNull();
  });
});

describe("CORS preflight", () => {
  it("grants a listed origin every method and a fixed list of headers, with credentials", async () => {
    const res = await preflight("/v2/app/manifests/v1", UI, named, "DELETE", "authorization, x-anything");
    expect(res.status).toBe(204);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe(UI);
    expect(res.headers.get("Access-Control-Allow-Credentials")).toBe("true");
    expect(values(res, "Vary")).toContain("origin");
    const methods = values(res, "Access-Control-Allow-Methods");
    for (const m of ["get", "head", "post", "put", "patch", "delete"]) expect(methods).toContain(m);
    const allowed = values(res, "Access-Control-Allow-Headers");
    for (const h of ["authorization", "accept", "content-type", "content-range", "range", "docker-content-digest"]) expect(allowed).toContain(h);
    // What the page asks for is not echoed.
    expect(allowed).not.toContain("x-anything");
    expect(allowed).not.toContain("*");
  });

  it("under *, grants any origin reading, without credentials", async () => {
    const res = await preflight("/v2/_catalog", EVIL, any, "GET", "authorization");
    expect(res.status).toBe(204);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Allow-Credentials")).toBeNull();
    expect(values(res, "Access-Control-Allow-Headers")).toContain("authorization");
    const methods = values(res, "Access-Control-Allow-Methods");
    expect(methods).toContain("get");
    expect(methods).not.toContain("delete");
    expect(methods).not.toContain("put");
  });

  it("refuses an unlisted origin with 403 DENIED and no grant, configured or not", async () => {
    for (const env of [named, {}]) {
      const res = await preflight("/v2/_catalog", EVIL, env);
      expect(res.status).toBe(403);
      expect(res.headers.get("Access-Control-Allow-Origin")).toBeNull();
      expect(res.headers.get("Access-Control-Allow-Credentials")).toBeNull();
      const body = (await res.json()) as ErrorBody;
      expect(body.errors[0]?.code).toBe("DENIED");
      expect(body.errors[0]?.message).toContain("CORS_ORIGINS");
    }
    expect((await preflight("/v2/_catalog", "null", named)).status).toBe(403);
  });

  it("leaves an OPTIONS without Origin to the routes", async () => {
    expect((await call("/v2/", { method: "OPTIONS", auth: null, env: named })).status).toBe(401);
  });
});

describe("cross-site requests that change the registry", () => {
  it("refuses a form-style POST from a foreign origin before it touches storage, and the same POST without Origin works", async () => {
    const name = uniqueName("cors");
    const { stray } = await seeded(name);
    const before = await keysUnder("");
    // A collection (deletes the stray blob) and an upload, as an HTML form on another site posts them.
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    for (const env of [named, any, {}]) {
      for (const path of [`/v2/${name}/gc?grace=0`, "/v2/_gc?grace=0", `/v2/${name}/blobs/uploads/`]) {
        const res = await call(path, { method: "POST", env, headers: { ...form, Origin: EVIL }, body: "a=b" });
        expect(res.status, `${path} ${JSON.stringify(env)}`).toBe(403);
        const body = (await res.json()) as ErrorBody;
        expect(body.errors[0]?.code).toBe("DENIED");
        expect(body.errors[0]?.message).toContain("CORS_ORIGINS");
      }
    }
    expect(await keysUnder("")).toEqual(before);
    const res = await call(`/v2/${name}/gc?grace=0`, { method: "POST" });
    expect(res.status).toBe(200);
    expect((await call(`/v2/${name}/blobs/${stray}`, { method: "HEAD" })).status).toBe(404);
  });

  it("refuses a DELETE from a foreign origin, and the same DELETE without Origin works", async () => {
    const name = uniqueName("cors");
    await seeded(name);
    const before = await keysUnder("");
    for (const env of [named, any, {}]) {
      const res = await call(`/v2/${name}/manifests/v1`, { method: "DELETE", env, headers: { Origin: EVIL } });
      expect(res.status).toBe(403);
      expect(await errorCode(res)).toBe("DENIED");
    }
    expect(await keysUnder("")).toEqual(before);
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(200);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(404);
  });

  it("under *, says why an unlisted page may read but not write", async () => {
    const name = uniqueName("cors");
    await seeded(name);
    const res = await call(`/v2/${name}/manifests/v1`, { method: "DELETE", env: any, headers: { Origin: EVIL } });
    expect(res.status).toBe(403);
    // The page can read the refusal (a literal *, no credentials).
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const body = (await res.json()) as ErrorBody;
    expect(body.errors[0]?.message).toContain("listed by name");
    expect((await call(`/v2/${name}/tags/list`, { env: any, headers: { Origin: EVIL } })).status).toBe(200);
  });

  it("refuses Origin: null and a cross-site Sec-Fetch-Site without Origin", async () => {
    const name = uniqueName("cors");
    const { stray } = await seeded(name);
    const before = await keysUnder("");
    const sandboxed = await call(`/v2/${name}/gc?grace=0`, { method: "POST", env: { CORS_ORIGINS: "*, null" }, headers: { Origin: "null" } });
    expect(sandboxed.status).toBe(403);
    expect(await errorCode(sandboxed)).toBe("DENIED");
    for (const site of ["cross-site", "same-site"]) {
      const res = await call(`/v2/${name}/blobs/${stray}`, { method: "DELETE", headers: { "Sec-Fetch-Site": site } });
      expect(res.status, site).toBe(403);
      expect(await errorCode(res)).toBe("DENIED");
    }
    expect(await keysUnder("")).toEqual(before);
    // What a same-origin page or a typed URL sends passes.
    const upload = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", headers: { "Sec-Fetch-Site": "same-origin" } });
    expect(upload.status).toBe(202);
  });

  it("lets a listed origin and the registry's own origin change the registry", async () => {
    const name = uniqueName("cors");
    await seeded(name);
    const listed = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", env: named, headers: { Origin: UI } });
    expect(listed.status).toBe(202);
    expect(listed.headers.get("Access-Control-Allow-Origin")).toBe(UI);
    const own = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", headers: { Origin: ORIGIN, "Sec-Fetch-Site": "same-origin" } });
    expect(own.status).toBe(202);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE", env: named, headers: { Origin: UI } })).status).toBe(202);
  });

  it("leaves reads from foreign origins alone (the browser keeps their answers from the page)", async () => {
    const name = uniqueName("cors");
    await seeded(name);
    const res = await call(`/v2/${name}/manifests/v1`, { env: named, headers: { Origin: EVIL, "Sec-Fetch-Site": "cross-site" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBeNull();
  });
});
