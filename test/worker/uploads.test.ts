import { describe, expect, it } from "vitest";
import {
  bodyBytes,
  bytesOf,
  call,
  concat,
  errorCode,
  keysUnder,
  sha256,
  startUpload,
  uniqueName,
  withQuery,
} from "./helpers";

const MiB = 1024 * 1024;

/** Sends one PATCH chunk, with Content-Range and Content-Length when `start` is given. */
function patch(location: string, chunk: Uint8Array, start?: number): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/octet-stream" };
  if (start !== undefined) {
    headers["Content-Range"] = `${start}-${start + chunk.byteLength - 1}`;
    headers["Content-Length"] = String(chunk.byteLength);
  }
  return call(location, { method: "PATCH", body: chunk, headers });
}

/** Sends a blob as PATCH chunks of the given sizes, then closes with an empty PUT; returns the PUT. */
async function chunkedUpload(name: string, data: Uint8Array, sizes: number[]): Promise<{ put: Response; id: string }> {
  let { location } = await startUpload(name);
  const id = location.slice(location.lastIndexOf("/") + 1).split("?")[0]!;
  let offset = 0;
  for (const size of sizes) {
    const res = await patch(location, data.subarray(offset, offset + size), offset);
    expect(res.status, `PATCH at ${offset}`).toBe(202);
    offset += size;
    expect(res.headers.get("Range")).toBe(`0-${offset - 1}`);
    location = res.headers.get("Location")!;
  }
  expect(offset).toBe(data.byteLength);
  const put = await call(withQuery(location, { digest: await sha256(data) }), { method: "PUT" });
  return { put, id };
}

/** GETs a blob and checks its bytes hash to the digest. */
async function expectStored(name: string, digest: string, size: number): Promise<void> {
  const head = await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(head.headers.get("Content-Length")).toBe(String(size));
  const get = await call(`/v2/${name}/blobs/${digest}`);
  expect(get.status).toBe(200);
  const bytes = await bodyBytes(get);
  expect(bytes.byteLength).toBe(size);
  expect(await sha256(bytes)).toBe(digest);
}

async function expectNoSessionKeys(id: string): Promise<void> {
  expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
}

describe("starting an upload", () => {
  it("POST opens a session: 202 with Location, Docker-Upload-UUID and chunk length hints", async () => {
    const name = uniqueName("up");
    const res = await call(`/v2/${name}/blobs/uploads/`, { method: "POST" });
    expect(res.status).toBe(202);
    const location = res.headers.get("Location")!;
    expect(location).toMatch(new RegExp(`^/v2/${name}/blobs/uploads/[^/]+$`));
    expect(res.headers.get("Docker-Upload-UUID")).toBeTruthy();
    const min = Number(res.headers.get("OCI-Chunk-Min-Length"));
    const max = Number(res.headers.get("OCI-Chunk-Max-Length"));
    expect(Number.isInteger(min) && min > 0).toBe(true);
    expect(Number.isInteger(max) && max >= min).toBe(true);
  });

  it("POST ?digest= with the whole body stores the blob in one request (201)", async () => {
    const name = uniqueName("up");
    const data = bytesOf(5000, 3);
    const digest = await sha256(data);
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: data,
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(data.byteLength) },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(res.headers.get("Docker-Content-Digest")).toBe(digest);
    await expectStored(name, digest, data.byteLength);
  });

  it("POST ?digest= with a body that does not match is 400 DIGEST_INVALID and stores nothing", async () => {
    const name = uniqueName("up");
    const claimed = await sha256("something else");
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${claimed}`, { method: "POST", body: bytesOf(100) });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
    expect((await call(`/v2/${name}/blobs/${claimed}`, { method: "HEAD" })).status).toBe(404);
  });

  it("POST ?digest= with a 23 MiB body stores it byte-identical", { timeout: 120_000 }, async () => {
    const before = await keysUnder("_uploads/");
    const name = uniqueName("up");
    const data = bytesOf(23 * MiB, 11);
    const digest = await sha256(data);
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      body: data,
      headers: { "Content-Length": String(data.byteLength) },
    });
    expect(res.status).toBe(201);
    await expectStored(name, digest, data.byteLength);
    expect(await keysUnder("_uploads/")).toEqual(before);
  });
});

describe("monolithic and streamed uploads", () => {
  it("POST then PUT with the whole body (201)", async () => {
    const name = uniqueName("up");
    const data = bytesOf(2048, 5);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    const put = await call(withQuery(location, { digest }), {
      method: "PUT",
      body: data,
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(data.byteLength) },
    });
    expect(put.status).toBe(201);
    expect(put.headers.get("Location")).toBe(`/v2/${name}/blobs/${digest}`);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    await expectStored(name, digest, data.byteLength);
    await expectNoSessionKeys(id);
  });

  it("POST, PATCH streamed without Content-Range, then PUT without a body", async () => {
    const name = uniqueName("up");
    const data = bytesOf(3000, 6);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    const res = await call(location, { method: "PATCH", body: data, headers: { "Content-Type": "application/octet-stream" } });
    expect(res.status).toBe(202);
    expect(res.headers.get("Range")).toBe("0-2999");
    expect(res.headers.get("Docker-Upload-UUID")).toBe(id);
    const next = res.headers.get("Location")!;
    expect(next).toMatch(new RegExp(`^/v2/${name}/blobs/uploads/`));
    const put = await call(withQuery(next, { digest }), { method: "PUT" });
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    await expectStored(name, digest, data.byteLength);
    await expectNoSessionKeys(id);
  });

  it("an empty (0-byte) blob, monolithic and via a session", async () => {
    const empty = new Uint8Array(0);
    const digest = await sha256(empty);
    expect(digest).toBe("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    const a = uniqueName("up");
    const mono = await call(`/v2/${a}/blobs/uploads/?digest=${digest}`, { method: "POST", body: empty, headers: { "Content-Length": "0" } });
    expect(mono.status).toBe(201);
    await expectStored(a, digest, 0);

    const b = uniqueName("up");
    const { location } = await startUpload(b);
    const put = await call(withQuery(location, { digest }), { method: "PUT" });
    expect(put.status).toBe(201);
    await expectStored(b, digest, 0);
    const get = await call(`/v2/${b}/blobs/${digest}`);
    expect(get.headers.get("Content-Length")).toBe("0");
  });
});

describe("chunked uploads", () => {
  it("PATCHes with Content-Range and Content-Length, then PUT", async () => {
    const name = uniqueName("up");
    const data = bytesOf(10_000, 8);
    const { put, id } = await chunkedUpload(name, data, [4000, 1, 5999]);
    expect(put.status).toBe(201);
    await expectStored(name, await sha256(data), data.byteLength);
    await expectNoSessionKeys(id);
  });

  it("a final chunk can travel in the closing PUT", async () => {
    const name = uniqueName("up");
    const data = bytesOf(6000, 9);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const first = await patch(location, data.subarray(0, 4000), 0);
    expect(first.status).toBe(202);
    const put = await call(withQuery(first.headers.get("Location")!, { digest }), {
      method: "PUT",
      body: data.subarray(4000),
      headers: { "Content-Range": "4000-5999", "Content-Length": "2000", "Content-Type": "application/octet-stream" },
    });
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(digest);
    await expectStored(name, digest, data.byteLength);
  });

  it("an out-of-order chunk is 416 with a Range header showing what the registry holds, and the upload can resume", async () => {
    const name = uniqueName("up");
    const data = bytesOf(3000, 10);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const first = await patch(location, data.subarray(0, 1000), 0);
    expect(first.status).toBe(202);
    const loc = first.headers.get("Location")!;

    const gap = await patch(loc, data.subarray(2000, 3000), 2000);
    expect(gap.status).toBe(416);
    expect(gap.headers.get("Range")).toBe("0-999");
    const overlap = await patch(loc, data.subarray(500, 1500), 500);
    expect(overlap.status).toBe(416);
    expect(overlap.headers.get("Range")).toBe("0-999");

    const status = await call(loc);
    expect(status.status).toBe(204);
    expect(status.headers.get("Range")).toBe("0-999");

    const rest = await patch(loc, data.subarray(1000), 1000);
    expect(rest.status).toBe(202);
    expect(rest.headers.get("Range")).toBe("0-2999");
    const put = await call(withQuery(rest.headers.get("Location")!, { digest }), { method: "PUT" });
    expect(put.status).toBe(201);
    await expectStored(name, digest, data.byteLength);
  });

  it("POST with ?mount= but no from opens a session (202)", async () => {
    const name = uniqueName("up");
    const res = await call(`/v2/${name}/blobs/uploads/?mount=${await sha256("x")}`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(res.headers.get("Location")).toMatch(new RegExp(`^/v2/${name}/blobs/uploads/`));
  });

  it("GET on a session is 204 with Range, Docker-Upload-UUID and Location", async () => {
    const name = uniqueName("up");
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    expect((await patch(location, bytesOf(1234), 0)).status).toBe(202);
    const res = await call(location);
    expect(res.status).toBe(204);
    expect(res.headers.get("Range")).toBe("0-1233");
    expect(res.headers.get("Docker-Upload-UUID")).toBe(id);
    expect(res.headers.get("Location")).toMatch(new RegExp(`^/v2/${name}/blobs/uploads/${id}`));
    expect((await bodyBytes(res)).byteLength).toBe(0);
  });
});

describe("ending and losing sessions", () => {
  it("DELETE cancels: 204, then GET, PATCH and PUT on it are 404 BLOB_UPLOAD_UNKNOWN", async () => {
    const name = uniqueName("up");
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    expect((await patch(location, bytesOf(100), 0)).status).toBe(202);
    const del = await call(location, { method: "DELETE" });
    expect(del.status).toBe(204);
    await expectNoSessionKeys(id);

    const get = await call(location);
    expect(get.status).toBe(404);
    expect(await errorCode(get)).toBe("BLOB_UPLOAD_UNKNOWN");
    const more = await call(location, { method: "PATCH", body: bytesOf(10) });
    expect(more.status).toBe(404);
    expect(await errorCode(more)).toBe("BLOB_UPLOAD_UNKNOWN");
    const put = await call(withQuery(location, { digest: await sha256(bytesOf(100)) }), { method: "PUT" });
    expect(put.status).toBe(404);
    expect(await errorCode(put)).toBe("BLOB_UPLOAD_UNKNOWN");
    const again = await call(location, { method: "DELETE" });
    expect(again.status).toBe(404);
    expect(await errorCode(again)).toBe("BLOB_UPLOAD_UNKNOWN");
  });

  it("a finished session is gone", async () => {
    const name = uniqueName("up");
    const data = bytesOf(10);
    const { location } = await startUpload(name);
    expect((await call(withQuery(location, { digest: await sha256(data) }), { method: "PUT", body: data })).status).toBe(201);
    const res = await call(location);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UPLOAD_UNKNOWN");
  });

  it("an unknown upload id is 404 BLOB_UPLOAD_UNKNOWN", async () => {
    const name = uniqueName("up");
    for (const id of [crypto.randomUUID(), "not-a-uuid"]) {
      for (const method of ["GET", "PATCH", "PUT", "DELETE"]) {
        const path = method === "PUT" ? `/v2/${name}/blobs/uploads/${id}?digest=${await sha256("")}` : `/v2/${name}/blobs/uploads/${id}`;
        const res = await call(path, { method, body: method === "PATCH" ? "abc" : undefined });
        expect(res.status, `${method} ${id}`).toBe(404);
        expect(await errorCode(res), `${method} ${id}`).toBe("BLOB_UPLOAD_UNKNOWN");
      }
    }
  });

  it("a session cannot be used under another repository name", async () => {
    const name = uniqueName("up");
    const other = uniqueName("up");
    const { location } = await startUpload(name);
    const elsewhere = location.replace(`/v2/${name}/`, `/v2/${other}/`);
    expect(elsewhere).not.toBe(location);
    const get = await call(elsewhere);
    expect(get.status).toBe(404);
    expect(await errorCode(get)).toBe("BLOB_UPLOAD_UNKNOWN");
    const patched = await call(elsewhere, { method: "PATCH", body: bytesOf(10) });
    expect(patched.status).toBe(404);
    const data = bytesOf(10);
    const put = await call(withQuery(elsewhere, { digest: await sha256(data) }), { method: "PUT", body: data });
    expect(put.status).toBe(404);
    expect((await call(`/v2/${other}/blobs/${await sha256(data)}`, { method: "HEAD" })).status).toBe(404);
    // The session is untouched in its own repository.
    const own = await call(location);
    expect(own.status).toBe(204);
  });

  for (const [label, size] of [["a small", 500], ["a multi-part (11 MiB)", 11 * MiB]] as const) {
    it(`a wrong digest on ${label} upload is 400 DIGEST_INVALID, stores nothing and leaves no session keys`, { timeout: 60_000 }, async () => {
      const name = uniqueName("up");
      const data = bytesOf(size, 12);
      const wrong = await sha256("other content");
      const { location } = await startUpload(name);
      const id = location.slice(location.lastIndexOf("/") + 1);
      expect((await patch(location, data, 0)).status).toBe(202);
      const put = await call(withQuery(location, { digest: wrong }), { method: "PUT" });
      expect(put.status).toBe(400);
      expect(await errorCode(put)).toBe("DIGEST_INVALID");
      expect((await call(`/v2/${name}/blobs/${wrong}`, { method: "HEAD" })).status).toBe(404);
      expect((await call(`/v2/${name}/blobs/${await sha256(data)}`, { method: "HEAD" })).status).toBe(404);
      await expectNoSessionKeys(id);
    });
  }

  it("a PUT without a digest is 400", async () => {
    const name = uniqueName("up");
    const { location } = await startUpload(name);
    const put = await call(location, { method: "PUT", body: bytesOf(10) });
    expect(put.status).toBe(400);
    expect(put.headers.get("Content-Type")).toMatch(/^application\/json/);
    const malformed = await call(withQuery(location, { digest: "sha256:nothex" }), { method: "PUT", body: bytesOf(10) });
    expect(malformed.status).toBe(400);
    expect(await errorCode(malformed)).toBe("DIGEST_INVALID");
  });
});

describe("blobs larger than one 10 MiB part", { timeout: 120_000 }, () => {
  const SIZE = 23 * MiB + 17;

  it("23 MiB as one streamed PATCH", async () => {
    const name = uniqueName("big");
    const data = bytesOf(SIZE, 21);
    const digest = await sha256(data);
    const { location } = await startUpload(name);
    const id = location.slice(location.lastIndexOf("/") + 1);
    const res = await call(location, { method: "PATCH", body: data });
    expect(res.status).toBe(202);
    expect(res.headers.get("Range")).toBe(`0-${SIZE - 1}`);
    const put = await call(withQuery(res.headers.get("Location")!, { digest }), { method: "PUT" });
    expect(put.status).toBe(201);
    await expectStored(name, digest, SIZE);
    await expectNoSessionKeys(id);
  });

  it("23 MiB as chunks of odd sizes (7 MiB, 1 byte, 12 MiB, rest)", async () => {
    const name = uniqueName("big");
    const data = bytesOf(SIZE, 22);
    const sizes = [7 * MiB, 1, 12 * MiB];
    sizes.push(SIZE - sizes.reduce((a, b) => a + b, 0));
    const { put, id } = await chunkedUpload(name, data, sizes);
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(await sha256(data));
    await expectStored(name, await sha256(data), SIZE);
    await expectNoSessionKeys(id);
  });

  it("23 MiB as many small chunks", async () => {
    const name = uniqueName("big");
    const data = bytesOf(SIZE, 23);
    const sizes: number[] = [];
    for (let left = SIZE, i = 0; left > 0; i++) {
      const size = Math.min(left, 1 * MiB + (i % 3) * 4099);
      sizes.push(size);
      left -= size;
    }
    expect(sizes.length).toBeGreaterThan(15);
    const { put, id } = await chunkedUpload(name, data, sizes);
    expect(put.status).toBe(201);
    await expectStored(name, await sha256(data), SIZE);
    await expectNoSessionKeys(id);
  });

  it("23 MiB in the closing PUT, and the last chunk of a multi-part upload in the PUT", async () => {
    const name = uniqueName("big");
    const data = bytesOf(SIZE, 24);
    const digest = await sha256(data);
    const whole = await startUpload(name);
    const put = await call(withQuery(whole.location, { digest }), { method: "PUT", body: data });
    expect(put.status).toBe(201);
    await expectStored(name, digest, SIZE);

    const other = uniqueName("big");
    const { location } = await startUpload(other);
    const first = await patch(location, data.subarray(0, 15 * MiB), 0);
    expect(first.status).toBe(202);
    const last = await call(withQuery(first.headers.get("Location")!, { digest }), {
      method: "PUT",
      body: data.subarray(15 * MiB),
      headers: { "Content-Range": `${15 * MiB}-${SIZE - 1}`, "Content-Length": String(SIZE - 15 * MiB) },
    });
    expect(last.status).toBe(201);
    await expectStored(other, digest, SIZE);
  });

  it("exactly two whole parts (20 MiB), nothing left over for the closing PUT", async () => {
    const name = uniqueName("big");
    const data = bytesOf(20 * MiB, 27);
    const { put, id } = await chunkedUpload(name, data, [10 * MiB, 10 * MiB]);
    expect(put.status).toBe(201);
    await expectStored(name, await sha256(data), data.byteLength);
    await expectNoSessionKeys(id);
  });

  it("leaves no _uploads/ keys behind once an upload is finished", async () => {
    const before = await keysUnder("_uploads/");
    const name = uniqueName("big");
    const data = concat(bytesOf(11 * MiB, 25), bytesOf(3, 26));
    const { put } = await chunkedUpload(name, data, [5 * MiB, 6 * MiB, 3]);
    expect(put.status).toBe(201);
    expect(await keysUnder("_uploads/")).toEqual(before);
    await expectStored(name, await sha256(data), data.byteLength);
  });
});
