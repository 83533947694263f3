import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { bodyBytes, bytesOf, call, errorCode, hexOf, pushBlob, sha256, uniqueName } from "./helpers";

const SIZE = 1000;

async function repoWithBlob(seed = 7): Promise<{ name: string; data: Uint8Array; digest: string }> {
  const name = uniqueName("blobs");
  const data = bytesOf(SIZE, seed);
  const digest = await pushBlob(name, data);
  return { name, data, digest };
}

describe("GET and HEAD a blob", () => {
  it("GET returns the bytes with Content-Length and Docker-Content-Digest", async () => {
    const { name, data, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe(String(SIZE));
    expect(res.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await bodyBytes(res)).toEqual(data);
  });

  it("HEAD returns the size and digest, no body", async () => {
    const { name, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe(String(SIZE));
    expect(res.headers.get("Docker-Content-Digest")).toBe(digest);
    expect((await bodyBytes(res)).byteLength).toBe(0);
  });

  it("an unknown blob is 404 BLOB_UNKNOWN (GET) and 404 (HEAD)", async () => {
    const { name } = await repoWithBlob();
    const digest = await sha256("never pushed");
    const get = await call(`/v2/${name}/blobs/${digest}`);
    expect(get.status).toBe(404);
    expect(await errorCode(get)).toBe("BLOB_UNKNOWN");
    const head = await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(404);
    expect((await bodyBytes(head)).byteLength).toBe(0);
  });

  it("a blob of one repository is not found in another", async () => {
    const { digest } = await repoWithBlob();
    const other = uniqueName("blobs");
    const res = await call(`/v2/${other}/blobs/${digest}`);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UNKNOWN");
  });

  it("a malformed digest is 400 DIGEST_INVALID", async () => {
    const { name } = await repoWithBlob();
    for (const bad of ["sha256:xyz", "notadigest", `sha256:${"A".repeat(64)}`, `sha256:${"a".repeat(63)}`]) {
      const res = await call(`/v2/${name}/blobs/${bad}`);
      expect(res.status, bad).toBe(400);
      expect(await errorCode(res), bad).toBe("DIGEST_INVALID");
    }
  });
});

describe("Range requests", () => {
  it("bytes=a-b gives 206 with Content-Range and just those bytes", async () => {
    const { name, data, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=10-19" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 10-19/${SIZE}`);
    expect(res.headers.get("Content-Length")).toBe("10");
    expect(await bodyBytes(res)).toEqual(data.slice(10, 20));
  });

  it("bytes=a- gives the rest of the blob", async () => {
    const { name, data, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=900-" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 900-999/${SIZE}`);
    expect(await bodyBytes(res)).toEqual(data.slice(900));
  });

  it("bytes=-n gives the last n bytes", async () => {
    const { name, data, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=-5" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 995-999/${SIZE}`);
    expect(await bodyBytes(res)).toEqual(data.slice(995));
  });

  it("an end past the blob is clipped to its last byte", async () => {
    const { name, data, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=990-5000" } });
    expect(res.status).toBe(206);
    expect(res.headers.get("Content-Range")).toBe(`bytes 990-999/${SIZE}`);
    expect(await bodyBytes(res)).toEqual(data.slice(990));
  });

  it("a range starting past the end is 416", async () => {
    const { name, digest } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=5000-6000" } });
    expect(res.status).toBe(416);
    expect(res.headers.get("Content-Range")).toBe(`bytes */${SIZE}`);
  });

  it("any range of an empty blob is 416", async () => {
    const name = uniqueName("blobs");
    const digest = await pushBlob(name, new Uint8Array(0));
    const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=0-0" } });
    expect(res.status).toBe(416);
    expect(res.headers.get("Content-Range")).toBe("bytes */0");
  });

  it("a range on an unknown blob is 404", async () => {
    const { name } = await repoWithBlob();
    const res = await call(`/v2/${name}/blobs/${await sha256("nope")}`, { headers: { Range: "bytes=0-1" } });
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UNKNOWN");
  });
});

describe("DELETE a blob", () => {
  it("answers 202, then the blob is 404 BLOB_UNKNOWN", async () => {
    const { name, digest } = await repoWithBlob();
    const del = await call(`/v2/${name}/blobs/${digest}`, { method: "DELETE" });
    expect(del.status).toBe(202);
    const get = await call(`/v2/${name}/blobs/${digest}`);
    expect(get.status).toBe(404);
    expect(await errorCode(get)).toBe("BLOB_UNKNOWN");
    expect((await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
  });

  it("deleting an unknown blob is 404 BLOB_UNKNOWN", async () => {
    const name = uniqueName("blobs");
    const res = await call(`/v2/${name}/blobs/${await sha256("ghost")}`, { method: "DELETE" });
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UNKNOWN");
  });
});

describe("cross-repository mount", () => {
  it("mounts a blob from another repository: 201 with Location and Docker-Content-Digest", async () => {
    const { name: a, data, digest } = await repoWithBlob();
    const b = uniqueName("blobs");
    const res = await call(`/v2/${b}/blobs/uploads/?mount=${digest}&from=${a}`, { method: "POST" });
    expect(res.status).toBe(201);
    expect(res.headers.get("Location")).toBe(`/v2/${b}/blobs/${digest}`);
    expect(res.headers.get("Docker-Content-Digest")).toBe(digest);

    const get = await call(`/v2/${b}/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(get.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(get.headers.get("Content-Length")).toBe(String(SIZE));
    expect(await bodyBytes(get)).toEqual(data);

    const head = await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Content-Length")).toBe(String(SIZE));
    expect(head.headers.get("Docker-Content-Digest")).toBe(digest);

    const range = await call(`/v2/${b}/blobs/${digest}`, { headers: { Range: "bytes=0-3" } });
    expect(range.status).toBe(206);
    expect(await bodyBytes(range)).toEqual(data.slice(0, 4));
  });

  it("opens an upload session (202) when the source repository lacks the blob", async () => {
    const a = uniqueName("blobs");
    const b = uniqueName("blobs");
    const digest = await sha256("not anywhere");
    const res = await call(`/v2/${b}/blobs/uploads/?mount=${digest}&from=${a}`, { method: "POST" });
    expect(res.status).toBe(202);
    const location = res.headers.get("Location")!;
    expect(location).toMatch(new RegExp(`^/v2/${b}/blobs/uploads/`));
    expect((await call(location)).status).toBe(204);
    expect((await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
  });

  it("a mount of a mount still reads the original bytes", async () => {
    const { name: a, data, digest } = await repoWithBlob();
    const b = uniqueName("blobs");
    const c = uniqueName("blobs");
    expect((await call(`/v2/${b}/blobs/uploads/?mount=${digest}&from=${a}`, { method: "POST" })).status).toBe(201);
    const second = await call(`/v2/${c}/blobs/uploads/?mount=${digest}&from=${b}`, { method: "POST" });
    expect(second.status).toBe(201);
    expect(second.headers.get("Docker-Content-Digest")).toBe(digest);
    const get = await call(`/v2/${c}/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(await bodyBytes(get)).toEqual(data);
    const head = await call(`/v2/${c}/blobs/${digest}`, { method: "HEAD" });
    expect(head.headers.get("Content-Length")).toBe(String(SIZE));
  });

  it("deleting the mounted copy leaves the source intact", async () => {
    const { name: a, digest } = await repoWithBlob();
    const b = uniqueName("blobs");
    expect((await call(`/v2/${b}/blobs/uploads/?mount=${digest}&from=${a}`, { method: "POST" })).status).toBe(201);
    expect((await call(`/v2/${b}/blobs/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
  });

  it("a mounted blob stays readable after the source repository deletes its copy", async () => {
    const { name: a, data, digest } = await repoWithBlob();
    const b = uniqueName("blobs");
    expect((await call(`/v2/${b}/blobs/uploads/?mount=${digest}&from=${a}`, { method: "POST" })).status).toBe(201);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    // Repositories are independent: b was given the blob and never deleted it.
    const head = await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    const get = await call(`/v2/${b}/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(await bodyBytes(get)).toEqual(data);
  });

  it("a symlink object whose target is gone is 404 BLOB_UNKNOWN, not a server error", async () => {
    const a = uniqueName("legacy");
    const b = uniqueName("legacy");
    const digest = await sha256("gone");
    await env.REGISTRY.put(`${b}/blobs/${digest}`, `${a}/blobs/${digest}`, {
      customMetadata: { "X-Serverless-Registry-Symlink": a },
    });
    const get = await call(`/v2/${b}/blobs/${digest}`);
    expect(get.status).toBe(404);
    expect(await errorCode(get)).toBe("BLOB_UNKNOWN");
    expect((await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
  });

  it("reads a mounted blob stored as a symlink object in the original's format", async () => {
    const a = uniqueName("legacy");
    const b = uniqueName("legacy");
    const data = bytesOf(4321, 99);
    const digest = await sha256(data);
    await env.REGISTRY.put(`${a}/blobs/${digest}`, data, { sha256: hexOf(digest) });
    const pointer = `${a}/blobs/${digest}`;
    await env.REGISTRY.put(`${b}/blobs/${digest}`, pointer, {
      sha256: hexOf(await sha256(pointer)),
      customMetadata: { "X-Serverless-Registry-Symlink": a },
    });

    const get = await call(`/v2/${b}/blobs/${digest}`);
    expect(get.status).toBe(200);
    expect(get.headers.get("Content-Length")).toBe("4321");
    expect(get.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await bodyBytes(get)).toEqual(data);

    const head = await call(`/v2/${b}/blobs/${digest}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Content-Length")).toBe("4321");
    expect(head.headers.get("Docker-Content-Digest")).toBe(digest);

    // And it can be mounted onwards from the symlinked repository.
    const c = uniqueName("legacy");
    expect((await call(`/v2/${c}/blobs/uploads/?mount=${digest}&from=${b}`, { method: "POST" })).status).toBe(201);
    expect(await bodyBytes(await call(`/v2/${c}/blobs/${digest}`))).toEqual(data);
  });
});
