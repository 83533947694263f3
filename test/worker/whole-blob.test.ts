/**
 * A small blob sent whole in the first PATCH of its upload (skopeo, containerd: one PATCH with a
 * Content-Length, then the closing PUT) goes straight to its blob key: the PUT copies nothing.
 * Larger first requests write under a data key of their own, without a lease.
 */
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { heldBytes } from "../../src/registry/r2/held";
import { WHOLE_BLOB_LIMIT } from "../../src/registry/r2/whole-blob";
import { bodyBytes, bytesOf, call, concat, errorCode, keysUnder, sha256, startUpload, uniqueName, withQuery } from "./helpers";

const MiB = 1024 * 1024;

async function sha512(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
  return `sha512:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** PATCHes `bytes` with a Content-Length (and a Content-Range when `start` is given). */
function patch(location: string, bytes: Uint8Array | ReadableStream<Uint8Array>, headers: Record<string, string> = {}): Promise<Response> {
  return call(location, { method: "PATCH", body: bytes, headers, duplex: "half" } as RequestInit);
}

function close(location: string, digest: string): Promise<Response> {
  return call(withQuery(location, { digest }), { method: "PUT" });
}

async function readBlob(name: string, digest: string): Promise<Uint8Array | undefined> {
  const res = await call(`/v2/${name}/blobs/${digest}`);
  return res.status === 200 ? bodyBytes(res) : undefined;
}

const idOf = (location: string) => location.split("/").pop()!.split("?")[0]!;

describe("a small blob sent whole goes straight to its blob key", () => {
  it("is stored at its blob key by the PATCH; the PUT copies nothing and the upload leaves no data", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(3 * MiB, 1);
    const digest = await sha256(bytes);
    const { location } = await startUpload(name);
    const patched = await patch(location, bytes);
    expect(patched.status).toBe(202);
    expect(patched.headers.get("Range")).toBe(`0-${bytes.byteLength - 1}`);
    // Stored before the PUT, as plain bytes (one read on every pull).
    const stored = await env.REGISTRY.head(`${name}/blobs/${digest}`);
    expect(stored?.size).toBe(bytes.byteLength);
    expect(stored?.customMetadata).toEqual({});
    const put = await close(patched.headers.get("Location")!, digest);
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    expect((await env.REGISTRY.head(`${name}/blobs/${digest}`))?.etag).toBe(stored?.etag);
    expect(await keysUnder(`_uploads/${idOf(location)}`)).toEqual([]);
    expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
  });

  it("up to 16 MiB; a larger body is streamed into the upload's own data, then published", async () => {
    const name = uniqueName("whole");
    for (const size of [WHOLE_BLOB_LIMIT, WHOLE_BLOB_LIMIT + 1]) {
      const bytes = bytesOf(size, 2);
      const digest = await sha256(bytes);
      const { location } = await startUpload(name);
      heldBytes.reset();
      const patched = await patch(location, bytes);
      expect(patched.status).toBe(202);
      // Held whole while it is hashed: within the 16 MiB an upload may hold.
      expect(heldBytes.peak).toBeLessThanOrEqual(16 * MiB);
      expect(heldBytes.current).toBe(0);
      expect(!!(await env.REGISTRY.head(`${name}/blobs/${digest}`))).toBe(size <= WHOLE_BLOB_LIMIT);
      expect((await close(patched.headers.get("Location")!, digest)).status).toBe(201);
      expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
    }
  });

  it("a wrong digest at the PUT: 400 DIGEST_INVALID, nothing under it, the session gone; the next collection frees the bytes", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(MiB, 3);
    const actual = await sha256(bytes);
    const wrong = await sha256("other bytes");
    const { location } = await startUpload(name);
    const patched = await patch(location, bytes);
    const put = await close(patched.headers.get("Location")!, wrong);
    expect(put.status).toBe(400);
    expect(await errorCode(put)).toBe("DIGEST_INVALID");
    expect((await call(`/v2/${name}/blobs/${wrong}`, { method: "HEAD" })).status).toBe(404);
    expect(await keysUnder(`_uploads/${idOf(location)}`)).toEqual([]);
    // Unreferenced bytes under their own digest: a collection past its grace period frees them.
    const gc = await call(`/v2/${name}/gc?grace=0&mode=unreferenced`, { method: "POST" });
    expect(gc.status).toBe(200);
    expect((await call(`/v2/${name}/blobs/${actual}`, { method: "HEAD" })).status).toBe(404);
    expect(await keysUnder(`${name}/`)).toEqual([]);
  });

  it("keeps a blob the repository has already, as it is", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(2 * MiB, 4);
    const digest = await sha256(bytes);
    const first = await startUpload(name);
    expect((await close((await patch(first.location, bytes)).headers.get("Location")!, digest)).status).toBe(201);
    const before = await env.REGISTRY.head(`${name}/blobs/${digest}`);
    const second = await startUpload(name);
    const patched = await patch(second.location, bytes);
    expect(patched.status).toBe(202);
    expect((await close(patched.headers.get("Location")!, digest)).status).toBe(201);
    const after = await env.REGISTRY.head(`${name}/blobs/${digest}`);
    expect(after?.etag).toBe(before?.etag);
    expect(after?.uploaded.getTime()).toBe(before?.uploaded.getTime());
  });

  it("an upload that goes on after a whole PATCH: its bytes move into segments and the PUT publishes all of them", async () => {
    const name = uniqueName("whole");
    const first = bytesOf(MiB, 5);
    const second = bytesOf(2 * MiB, 6);
    const digest = await sha256(concat(first, second));
    const { location } = await startUpload(name);
    const a = await patch(location, first);
    expect(a.status).toBe(202);
    const b = await patch(a.headers.get("Location")!, second, { "Content-Range": `${first.byteLength}-${first.byteLength + second.byteLength - 1}` });
    expect(b.status).toBe(202);
    expect(b.headers.get("Range")).toBe(`0-${first.byteLength + second.byteLength - 1}`);
    expect((await close(b.headers.get("Location")!, digest)).status).toBe(201);
    expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
    expect(await keysUnder(`_uploads/${idOf(location)}`)).toEqual([]);
  });

  it("a whole PATCH that breaks off stores nothing; the upload stays open at 0", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(4 * MiB, 7);
    const { location } = await startUpload(name);
    let sent = 0;
    const breaking = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 2 * MiB) return controller.error(new Error("connection reset by peer"));
        controller.enqueue(bytes.slice(sent, sent + MiB));
        sent += MiB;
      },
    });
    await patch(location, breaking, { "Content-Length": String(bytes.byteLength) }).catch(() => undefined);
    const status = await call(location);
    expect(status.status).toBe(204);
    expect(status.headers.get("Range")).toBe("0-0");
    expect(await keysUnder(`${name}/`)).toEqual([]);
    const digest = await sha256(bytes);
    expect((await close((await patch(location, bytes)).headers.get("Location")!, digest)).status).toBe(201);
    expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
  });

  it("a body shorter or longer than its Content-Length is 400 SIZE_INVALID and stores nothing", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(MiB, 8);
    const { location } = await startUpload(name);
    const stream = (data: Uint8Array) => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(data), c.close()) });
    for (const body of [bytes.subarray(0, MiB - 10), concat(bytes, bytesOf(10, 9))]) {
      const res = await patch(location, stream(body), { "Content-Length": String(MiB) }).catch((e: unknown) => e);
      if (res instanceof Response) {
        expect(res.status).toBe(400);
        expect(await errorCode(res)).toBe("SIZE_INVALID");
      }
    }
    expect(await keysUnder(`${name}/`)).toEqual([]);
    expect((await call(location)).headers.get("Range")).toBe("0-0");
  });

  it("two whole PATCHes of one upload at once: one is recorded, the other is told where the upload stands (416)", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(MiB, 10);
    const digest = await sha256(bytes);
    const { location } = await startUpload(name);
    const answers = await Promise.all([patch(location, bytes), patch(location, bytes)]);
    expect(answers.map((a) => a.status).sort()).toEqual([202, 416]);
    const lost = answers.find((a) => a.status === 416)!;
    expect(lost.headers.get("Range")).toBe(`0-${bytes.byteLength - 1}`);
    expect((await close(location, digest)).status).toBe(201);
    expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
  });

  it("a sha512 digest at the PUT: the bytes are checked against it as they are copied to its key", async () => {
    const name = uniqueName("whole");
    const bytes = bytesOf(MiB, 11);
    const digest = await sha512(bytes);
    const { location } = await startUpload(name);
    const patched = await patch(location, bytes);
    const put = await close(patched.headers.get("Location")!, digest);
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    expect(await readBlob(name, digest)).toEqual(bytes);
    const other = await startUpload(name);
    const wrong = await close((await patch(other.location, bytesOf(MiB, 12))).headers.get("Location")!, digest.replace(/.$/, "0"));
    expect(wrong.status).toBe(400);
    expect(await errorCode(wrong)).toBe("DIGEST_INVALID");
  });

  it("two larger first PATCHes of one upload at once: one is recorded, the other gets 416 and its bytes go", async () => {
    const name = uniqueName("first");
    const bytes = bytesOf(20 * MiB, 13);
    const digest = await sha256(bytes);
    const { location } = await startUpload(name);
    const before = new Set(await keysUnder("_data/"));
    const answers = await Promise.all([patch(location, bytes), patch(location, bytes)]);
    expect(answers.map((a) => a.status).sort()).toEqual([202, 416]);
    expect(answers.find((a) => a.status === 416)!.headers.get("Range")).toBe(`0-${bytes.byteLength - 1}`);
    const state = JSON.parse(await (await env.REGISTRY.get(`_uploads/${idOf(location)}`))!.text()) as { dataKey: string };
    expect((await keysUnder("_data/")).filter((key) => !before.has(key))).toEqual([state.dataKey]);
    expect((await close(location, digest)).status).toBe(201);
    expect(await sha256((await readBlob(name, digest))!)).toBe(digest);
  });

  /** A body that sends `bytes` in two halves, the second once `release` is called. */
  function held(bytes: Uint8Array): { body: ReadableStream<Uint8Array>; release: () => void } {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let step = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (step === 0) controller.enqueue(bytes.slice(0, bytes.byteLength / 2));
        else if (step === 1) await gate.then(() => controller.enqueue(bytes.slice(bytes.byteLength / 2)));
        else controller.close();
        step++;
      },
    });
    return { body, release };
  }

  for (const [what, end] of [
    ["a DELETE of the upload", (location: string) => call(location, { method: "DELETE" }).then((r) => expect(r.status).toBe(204))],
    ["the sweep of abandoned uploads", () => call("/v2/_gc?upload_age=0&grace=0", { method: "POST" }).then((r) => expect(r.status).toBe(200))],
  ] as const) {
    it(`a first PATCH still streaming when ${what} ends the session is refused (404), and leaves nothing`, async () => {
      const name = uniqueName("sealed");
      for (const size of [MiB, 20 * MiB]) {
        const { location } = await startUpload(name);
        const before = new Set(await keysUnder("_data/"));
        const { body, release } = held(bytesOf(size, 14));
        const patching = patch(location, body, { "Content-Length": String(size) });
        await new Promise((resolve) => setTimeout(resolve, 200));
        await end(location);
        release();
        const answer = await patching;
        expect(answer.status).toBe(404);
        expect(await errorCode(answer)).toBe("BLOB_UPLOAD_UNKNOWN");
        expect((await call(location)).status).toBe(404);
        expect((await keysUnder("_data/")).filter((key) => !before.has(key))).toEqual([]);
      }
    });
  }

  it("replaces a blob key that holds no blob (serverless-registry's symlink to bytes deleted since)", async () => {
    const name = uniqueName("dangling");
    const bytes = bytesOf(MiB, 15);
    const digest = await sha256(bytes);
    await env.REGISTRY.put(`${name}/blobs/${digest}`, `gone/blobs/${digest}`, { customMetadata: { "X-Serverless-Registry-Symlink": "gone" } });
    expect((await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    const { location } = await startUpload(name);
    expect((await close((await patch(location, bytes)).headers.get("Location")!, digest)).status).toBe(201);
    expect(await readBlob(name, digest)).toEqual(bytes);
  });
});
