/**
 * Malformed input, each answered with the right OCI error (status and code), and the bucket
 * checked unchanged afterwards: nothing stored, nothing lost, whatever a client sends.
 */
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { bytesOf, call, imageManifest, OCI_INDEX, OCI_MANIFEST, putManifest, sha256, startUpload } from "../worker/helpers";
import { claims, makeKey, setting, sign } from "../worker/tokens";

interface Case {
  what: string;
  path: string;
  init?: RequestInit & { auth?: string | null; env?: Record<string, string> };
  status: number;
  code: string;
}

/** Every key in the bucket with its etag. */
async function snapshot(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cursor: string | undefined;
  do {
    const page = await env.REGISTRY.list({ limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const object of page.objects) out.set(object.key, object.etag);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return out;
}

const REPO = "keep/app";
let image: { text: string; digest: string; blobs: string[] };
let session: string;
let sessionOffset: number;
let scopedToken: string;
let tokenEnv: Record<string, string>;

beforeAll(async () => {
  image = await imageManifest(REPO, 1);
  expect((await putManifest(REPO, "v1", image.text)).status).toBe(201);
  const { location } = await startUpload(REPO);
  const patch = await call(location, { method: "PATCH", body: bytesOf(100, 2), headers: { "Content-Range": "0-99" } });
  expect(patch.status).toBe(202);
  session = patch.headers.get("Location")!;
  sessionOffset = 100;
  // Indexes built on first use are built now, so they do not count as changes below.
  await call("/v2/_catalog");
  const key = await makeKey("ES256");
  tokenEnv = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
  scopedToken = await sign(key, claims(["pull", "push"], { repositories: ["other/*"] }));
});

const json = (value: unknown) => JSON.stringify(value);
const missing = `sha256:${"0".repeat(64)}`;

function cases(): Case[] {
  const manifestPut = (body: string, contentType = OCI_MANIFEST, reference = "bad") => ({
    method: "PUT",
    body,
    headers: { "Content-Type": contentType },
  });
  const uploadId = () => session.split("/").pop()!.split("?")[0]!;
  return [
    // Repository names.
    { what: "upper-case name", path: "/v2/Keep/App/manifests/v1", status: 400, code: "NAME_INVALID" },
    { what: "upper-case name on push", path: "/v2/Keep/app/manifests/v1", init: manifestPut(image.text), status: 400, code: "NAME_INVALID" },
    { what: "'..' in a name", path: "/v2/keep%2F..%2Fapp/tags/list", status: 400, code: "NAME_INVALID" },
    { what: "empty segment", path: "/v2/keep//app/tags/list", status: 400, code: "NAME_INVALID" },
    { what: "trailing slash segment", path: "/v2/keep/app%2F/tags/list", status: 400, code: "NAME_INVALID" },
    { what: "over-long name", path: `/v2/${"a".repeat(300)}/tags/list`, status: 400, code: "NAME_INVALID" },
    { what: "over-long name on upload", path: `/v2/${"a/".repeat(200)}b/blobs/uploads/`, init: { method: "POST" }, status: 400, code: "NAME_INVALID" },
    { what: "NUL in a name", path: "/v2/keep%00/app/tags/list", status: 400, code: "NAME_INVALID" },
    // Digests.
    { what: "digest with bad hex", path: `/v2/${REPO}/blobs/sha256:xyz`, status: 400, code: "DIGEST_INVALID" },
    { what: "digest one hex short", path: `/v2/${REPO}/blobs/sha256:${"a".repeat(63)}`, status: 400, code: "DIGEST_INVALID" },
    { what: "upper-case hex digest", path: `/v2/${REPO}/blobs/sha256:${"A".repeat(64)}`, status: 400, code: "DIGEST_INVALID" },
    { what: "unknown algorithm on upload", path: `/v2/${REPO}/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e`, init: { method: "POST", body: "x" }, status: 400, code: "DIGEST_INVALID" },
    { what: "digest that does not match the body", path: `/v2/${REPO}/blobs/uploads/?digest=${missing}`, init: { method: "POST", body: "not zeros" }, status: 400, code: "DIGEST_INVALID" },
    { what: "manifest PUT by a digest the body does not have", path: `/v2/${REPO}/manifests/${missing}`, init: manifestPut(image.text), status: 400, code: "DIGEST_INVALID" },
    { what: "bad digest in a mount", path: `/v2/${REPO}/blobs/uploads/?mount=sha256:zz&from=keep/other`, init: { method: "POST" }, status: 400, code: "DIGEST_INVALID" },
    { what: "bad tag", path: `/v2/${REPO}/manifests/-bad-tag`, init: manifestPut(image.text), status: 400, code: "TAG_INVALID" },
    // Manifests.
    { what: "manifest that is not JSON", path: `/v2/${REPO}/manifests/bad`, init: manifestPut("{not json"), status: 400, code: "MANIFEST_INVALID" },
    { what: "manifest that is a JSON array", path: `/v2/${REPO}/manifests/bad`, init: manifestPut("[]"), status: 400, code: "MANIFEST_INVALID" },
    { what: "manifest with a wrong schemaVersion", path: `/v2/${REPO}/manifests/bad`, init: manifestPut(json({ ...JSON.parse(image.text), schemaVersion: 3 })), status: 400, code: "MANIFEST_INVALID" },
    { what: "manifest with a size that is a string", path: `/v2/${REPO}/manifests/bad`, init: manifestPut(image.text.replace(/"size":(\d+)/, '"size":"$1"')), status: 400, code: "MANIFEST_INVALID" },
    { what: "manifest over 4 MiB", path: `/v2/${REPO}/manifests/bad`, init: manifestPut(json({ ...JSON.parse(image.text), annotations: { pad: "x".repeat(4 * 1024 * 1024) } })), status: 413, code: "SIZE_INVALID" },
    { what: "manifest referencing a missing blob", path: `/v2/${REPO}/manifests/bad`, init: manifestPut(image.text.replace(image.blobs[1]!, missing)), status: 400, code: "MANIFEST_BLOB_UNKNOWN" },
    { what: "index referencing a missing manifest", path: `/v2/${REPO}/manifests/bad`, init: manifestPut(json({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: missing, size: 10 }] }), OCI_INDEX), status: 400, code: "MANIFEST_BLOB_UNKNOWN" },
    { what: "unknown manifest", path: `/v2/${REPO}/manifests/nope`, status: 404, code: "MANIFEST_UNKNOWN" },
    { what: "unknown blob", path: `/v2/${REPO}/blobs/${missing}`, status: 404, code: "BLOB_UNKNOWN" },
    // Lengths and ranges.
    { what: "Content-Length that is not a number", path: `/v2/${REPO}/blobs/uploads/?digest=${missing}`, init: { method: "POST", body: "abc", headers: { "Content-Length": "three" } }, status: 400, code: "SIZE_INVALID" },
    { what: "Content-Range that does not parse", path: session, init: { method: "PATCH", body: "abc", headers: { "Content-Range": "bytes=a-b" } }, status: 416, code: "RANGE_INVALID" },
    { what: "Content-Range ending before it starts", path: session, init: { method: "PATCH", body: "abc", headers: { "Content-Range": `${sessionOffset + 2}-${sessionOffset}` } }, status: 416, code: "RANGE_INVALID" },
    { what: "Content-Range past the upload's end", path: session, init: { method: "PATCH", body: "abc", headers: { "Content-Range": `${sessionOffset + 10}-${sessionOffset + 12}` } }, status: 416, code: "RANGE_INVALID" },
    { what: "Content-Range overlapping what was received", path: session, init: { method: "PATCH", body: "abc", headers: { "Content-Range": "50-52" } }, status: 416, code: "RANGE_INVALID" },
    { what: "body (chunked) shorter than its Content-Range", path: session, init: { method: "PATCH", body: new Response("abc").body, duplex: "half", headers: { "Content-Range": `${sessionOffset}-${sessionOffset + 9}` } } as RequestInit, status: 400, code: "SIZE_INVALID" },
    { what: "body (chunked) longer than its Content-Range", path: session, init: { method: "PATCH", body: new Response("abcdefghijklmnop").body, duplex: "half", headers: { "Content-Range": `${sessionOffset}-${sessionOffset + 9}` } } as RequestInit, status: 400, code: "SIZE_INVALID" },
    { what: "Content-Length disagreeing with Content-Range", path: session, init: { method: "PATCH", body: "abc", headers: { "Content-Range": `${sessionOffset}-${sessionOffset + 9}` } }, status: 416, code: "RANGE_INVALID" },
    { what: "blob Range past the end", path: `/v2/${REPO}/blobs/${image.blobs[1]}`, init: { headers: { Range: "bytes=999999-" } }, status: 416, code: "RANGE_INVALID" },
    // Sessions.
    { what: "someone else's session (another repository)", path: session.replace(REPO, "keep/other"), init: { method: "PATCH", body: "abc" }, status: 404, code: "BLOB_UPLOAD_UNKNOWN" },
    { what: "a session outside a token's repositories", path: session, init: { method: "PATCH", body: "abc", auth: `Bearer ${scopedToken}`, env: tokenEnv }, status: 403, code: "DENIED" },
    { what: "unknown upload id", path: `/v2/${REPO}/blobs/uploads/${crypto.randomUUID()}`, init: { method: "PATCH", body: "abc" }, status: 404, code: "BLOB_UPLOAD_UNKNOWN" },
    { what: "upload id that is not a uuid", path: `/v2/${REPO}/blobs/uploads/..%2F..%2Fkeep`, init: { method: "PATCH", body: "abc" }, status: 404, code: "BLOB_UPLOAD_UNKNOWN" },
    { what: "closing an unknown upload", path: `/v2/${REPO}/blobs/uploads/${crypto.randomUUID()}?digest=${missing}`, init: { method: "PUT", body: "abc" }, status: 404, code: "BLOB_UPLOAD_UNKNOWN" },
    { what: "closing without a digest", path: session, init: { method: "PUT" }, status: 400, code: "DIGEST_INVALID" },
    { what: "cancelling an unknown upload", path: `/v2/${REPO}/blobs/uploads/${crypto.randomUUID()}`, init: { method: "DELETE" }, status: 404, code: "BLOB_UPLOAD_UNKNOWN" },
    // Listings.
    { what: "huge n", path: `/v2/${REPO}/tags/list?n=99999999999999999999`, status: 400, code: "PAGINATION_NUMBER_INVALID" },
    { what: "negative n", path: "/v2/_catalog?n=-1", status: 400, code: "PAGINATION_NUMBER_INVALID" },
    { what: "n twice", path: `/v2/${REPO}/tags/list?n=1&n=2`, status: 400, code: "PAGINATION_NUMBER_INVALID" },
    // Access.
    { what: "no credentials", path: `/v2/${REPO}/manifests/v1`, init: { method: "DELETE", auth: null }, status: 401, code: "UNAUTHORIZED" },
    { what: "unknown method", path: `/v2/${REPO}/manifests/v1`, init: { method: "PATCH" }, status: 405, code: "UNSUPPORTED" },
  ];
}

describe("malformed input", () => {
  it("answers each malformed request with the right OCI error and changes nothing", async () => {
    const all = cases();
    expect(all.length).toBeGreaterThan(40);
    for (const c of all) {
      const before = await snapshot();
      const { auth, env: overrides, ...init } = c.init ?? {};
      const res = await call(c.path, { ...init, ...(auth !== undefined ? { auth } : {}), ...(overrides ? { env: overrides } : {}) });
      const text = await res.text();
      expect.soft(res.status, `${c.what}: ${text}`).toBe(c.status);
      let code: string | undefined;
      let message = "";
      try {
        const body = JSON.parse(text) as { errors: { code: string; message: string }[] };
        code = body.errors[0]?.code;
        message = body.errors[0]?.message ?? "";
      } catch {
        code = undefined;
      }
      expect.soft(code, `${c.what}: ${text}`).toBe(c.code);
      expect.soft(message, c.what).not.toBe("");
      expect.soft(await snapshot(), `${c.what}: the bucket changed`).toEqual(before);
    }
  });

  it("keeps header injection in `last` out of the response headers", async () => {
    for (const path of [`/v2/${REPO}/tags/list?n=1&last=a%0d%0aX-Injected:%20yes`, "/v2/_catalog?n=1&last=a%0d%0aX-Injected:%20yes"]) {
      const res = await call(path);
      expect(res.status).toBeLessThan(500);
      expect(res.headers.get("X-Injected")).toBeNull();
      expect(res.headers.get("Link") ?? "").not.toMatch(/[\r\n]/);
    }
  });

  it("still serves everything pushed before", async () => {
    const res = await call(`/v2/${REPO}/manifests/v1`);
    expect(res.headers.get("Docker-Content-Digest")).toBe(image.digest);
    for (const blob of image.blobs) {
      const b = await call(`/v2/${REPO}/blobs/${blob}`);
      expect(await sha256(new Uint8Array(await b.arrayBuffer()))).toBe(blob);
    }
    const status = await call(session);
    expect(status.status).toBe(204);
    expect(status.headers.get("Range")).toBe(`0-${sessionOffset - 1}`);
  });
});
