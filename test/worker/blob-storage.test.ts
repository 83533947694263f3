import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { bodyBytes, bytesOf, call, hexOf, pushBlob, sha256, startUpload, uniqueName, withQuery } from "./helpers";

const MiB = 1024 * 1024;

async function readBack(name: string, digest: string): Promise<string> {
  const res = await call(`/v2/${name}/blobs/${digest}`);
  expect(res.status).toBe(200);
  return sha256(await bodyBytes(res));
}

async function mount(name: string, digest: string, from: string): Promise<Response> {
  return call(`/v2/${name}/blobs/uploads/?mount=${digest}&from=${from}`, { method: "POST" });
}

/** A body stream that sends `bytes` and then breaks, like a dropped connection. */
function breakingStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (!sent) {
        sent = true;
        for (let i = 0; i < bytes.byteLength; i += MiB) controller.enqueue(bytes.slice(i, i + MiB));
        return;
      }
      controller.error(new Error("connection reset by peer"));
    },
  });
}

describe("blob storage", () => {
  it("publishes a multi-part upload without copying it: the blob key is a pointer, verified by digest", async () => {
    const name = uniqueName("pointer");
    const data = bytesOf(23 * MiB, 5);
    const digest = await pushBlob(name, data);
    const object = await env.REGISTRY.head(`${name}/blobs/${digest}`);
    expect(object?.size).toBeLessThan(200);
    expect(object?.customMetadata?.["r2-registry-data"]).toMatch(/^_data\//);
    const head = await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
    expect(head.headers.get("Content-Length")).toBe(String(data.byteLength));
    expect(await readBack(name, digest)).toBe(digest);
    const range = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: `bytes=${20 * MiB}-${20 * MiB + 9}` } });
    expect(range.status).toBe(206);
    expect([...(await bodyBytes(range))]).toEqual([...data.subarray(20 * MiB, 20 * MiB + 10)]);
  });

  it("mounts a pointer blob as another pointer, which survives the source deleting its copy", async () => {
    const a = uniqueName("src");
    const b = uniqueName("dst");
    const digest = await pushBlob(a, bytesOf(21 * MiB, 6));
    expect((await mount(b, digest, a)).status).toBe(201);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    expect(await readBack(b, digest)).toBe(digest);
  });

  it("hands large bytes over to the repositories that symlink to them when the holder deletes its copy", async () => {
    // A bucket written by serverless-registry: real bytes in `a`, symlinks in its format in `b`
    // and `c` (not in this registry's symlink index).
    const a = uniqueName("holder");
    const b = uniqueName("mounted");
    const c = uniqueName("mounted");
    const data = bytesOf(17 * MiB, 7);
    const digest = await sha256(data);
    await env.REGISTRY.put(`${a}/blobs/${digest}`, data, { sha256: hexOf(digest) });
    for (const repo of [b, c]) {
      await env.REGISTRY.put(`${repo}/blobs/${digest}`, `${a}/blobs/${digest}`, { customMetadata: { "X-Serverless-Registry-Symlink": a } });
      await env.REGISTRY.put(`_repositories/${repo}`, "");
    }
    await env.REGISTRY.put(`_repositories/${a}`, "");
    // As if this registry had never run on the bucket: its symlinks get indexed on first use.
    await env.REGISTRY.delete("_meta/links-v2-backfilled");
    // And one mounted by this registry (a symlink too, above the copy-on-mount size).
    const d = uniqueName("mounted");
    expect((await mount(d, digest, b)).status).toBe(201);
    expect((await env.REGISTRY.head(`${d}/blobs/${digest}`))?.customMetadata?.["X-Serverless-Registry-Symlink"]).toBe(a);

    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${a}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    for (const repo of [b, c, d]) expect(await readBack(repo, digest)).toBe(digest);
  });

  it("copies a small blob when mounting it, so the repositories stay independent", async () => {
    const a = uniqueName("small");
    const b = uniqueName("small");
    const digest = await pushBlob(a, "a small config blob");
    expect((await mount(b, digest, a)).status).toBe(201);
    expect(await (await env.REGISTRY.get(`${b}/blobs/${digest}`))?.text()).toBe("a small config blob");
  });

  it("keeps what arrived before a dropped connection, and the client resumes from the offset it is told", async () => {
    const name = uniqueName("resume");
    const data = bytesOf(25 * MiB, 8);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const first = 15 * MiB + 123;
    await call(location, { method: "PATCH", body: breakingStream(data.subarray(0, first)), duplex: "half" } as RequestInit).catch(() => undefined);

    const status = await call(location);
    expect(status.status).toBe(204);
    const range = status.headers.get("Range")!;
    const offset = Number(range.split("-")[1]) + 1;
    expect(offset).toBe(first);

    const rest = data.subarray(offset);
    const patch = await call(location, {
      method: "PATCH",
      body: rest,
      headers: { "Content-Range": `${offset}-${data.byteLength - 1}`, "Content-Length": String(rest.byteLength) },
    });
    expect(patch.status).toBe(202);
    const put = await call(withQuery(location, { digest }), { method: "PUT" });
    expect(put.status).toBe(201);
    expect(await readBack(name, digest)).toBe(digest);
  });

  it("refuses a second writer while a session is held, and lets a client take over once the holder's lease lapsed", async () => {
    const name = uniqueName("lease");
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    // The first request writes under a data key of its own; the ones after it take a lease.
    expect((await call(location, { method: "PATCH", body: "abc", headers: { "Content-Range": "0-2" } })).status).toBe(202);
    // A request writing from offset 3 holds `_uploads/<id>/lease-3` until the time it says.
    const setLease = async (until: number) => {
      await env.REGISTRY.put(`_uploads/${id}/lease-3`, JSON.stringify({ until }));
    };
    await setLease(Date.now() + 60_000); // a request that is still writing
    const busy = await call(location, { method: "PATCH", body: "def", headers: { "Content-Range": "3-5" } });
    expect(busy.status).toBe(416);
    expect(busy.headers.get("Range")).toBe("0-2");
    await setLease(Date.now() - 1); // a request that died: its lease ran out
    const taken = await call(location, { method: "PATCH", body: "def", headers: { "Content-Range": "3-5" } });
    expect(taken.status).toBe(202);
    expect(taken.headers.get("Range")).toBe("0-5");
    const put = await call(withQuery(location, { digest: await sha256("abcdef") }), { method: "PUT" });
    expect(put.status).toBe(201);
  });
});
