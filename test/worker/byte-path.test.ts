import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { heldBytes } from "../../src/registry/r2/held";
import { MAX_SEGMENT, MIN_SEGMENT, nextSegment, segmentSizeAt } from "../../src/registry/r2/ingest";
import { bodyBytes, bytesOf, call, concat, errorCode, hexOf, keysUnder, sha256, startUpload, uniqueName, withQuery } from "./helpers";

const MiB = 1024 * 1024;

/** A body of unknown length (chunked, as docker and podman may send), in chunks of `chunk` bytes. */
function chunked(bytes: Uint8Array, chunk = MiB): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

/** A body that sends `bytes` and then breaks, like a dropped connection. */
function breaking(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.error(new Error("connection reset by peer"));
      controller.enqueue(bytes.slice(at, at + MiB));
      at += MiB;
    },
  });
}

/**
 * PATCHes one chunk: with its length (Content-Length), with its length and where it goes
 * (`ranged`: Content-Range from `start`, as resuming clients send it), or without (a stream).
 */
async function send(location: string, bytes: Uint8Array, how: How, options: { env?: Record<string, string>; start?: number } = {}): Promise<Response> {
  const start = options.start ?? 0;
  const res = await call(location, {
    method: "PATCH",
    body: how === "chunked" ? chunked(bytes) : bytes,
    ...(how === "ranged" ? { headers: { "Content-Range": `${start}-${start + bytes.byteLength - 1}` } } : {}),
    duplex: "half",
    ...(options.env ? { env: options.env } : {}),
  } as RequestInit);
  return res;
}

/**
 * An upload session's state as the registry reads it: `_uploads/<id>` (or `created` before any
 * bytes), then the `after-<offset>` records of requests that followed it within 2 s.
 */
async function session(id: string): Promise<{ dataKey: string; segments: number[]; offset: number }> {
  const first = (await env.REGISTRY.get(`_uploads/${id}`)) ?? (await env.REGISTRY.get(`_uploads/${id}/created`));
  let state = JSON.parse(await first!.text()) as { dataKey: string; segments: number[]; offset: number };
  for (let next = await env.REGISTRY.get(`_uploads/${id}/after-${state.offset}`); next; next = await env.REGISTRY.get(`_uploads/${id}/after-${state.offset}`)) {
    state = JSON.parse(await next.text()) as typeof state;
  }
  return state;
}

type How = "known" | "ranged" | "chunked";

const idOf = (location: string) => location.split("/").pop()!.split("?")[0]!;

/** Uploads `pieces` in turn (the last one in the closing PUT when `lastInPut`), returning what it stored. */
async function upload(name: string, pieces: { bytes: Uint8Array; how: How }[], lastInPut = false) {
  const data = concat(...pieces.map((p) => p.bytes));
  const digest = await sha256(data);
  let { location } = await startUpload(name);
  const id = idOf(location);
  const patches = lastInPut ? pieces.slice(0, -1) : pieces;
  for (const piece of patches) {
    const res = await send(location, piece.bytes, piece.how);
    expect(res.status).toBe(202);
    location = res.headers.get("Location")!;
  }
  const { dataKey, segments } = await session(id);
  const last = lastInPut ? pieces.at(-1)! : undefined;
  const put = await call(withQuery(location, { digest }), {
    method: "PUT",
    ...(last ? { body: last.how === "chunked" ? chunked(last.bytes) : last.bytes, duplex: "half" } : {}),
  } as RequestInit);
  expect(put.status).toBe(201);
  return { data, digest, dataKey, segmentsBeforePut: segments };
}

/** Reads `[start, end]` of a blob with a Range request and compares it with the bytes pushed. */
async function expectRange(name: string, digest: string, data: Uint8Array, start: number, end: number) {
  const res = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: `bytes=${start}-${end}` } });
  expect(res.status).toBe(206);
  expect(res.headers.get("Content-Range")).toBe(`bytes ${start}-${end}/${data.byteLength}`);
  const got = await bodyBytes(res);
  expect(got.byteLength).toBe(end - start + 1);
  expect(await sha256(got)).toBe(await sha256(data.subarray(start, end + 1)));
}

/** The whole blob reads back, and ranges around every boundary of `sizes` read back too. */
async function expectReadsBack(name: string, digest: string, data: Uint8Array, sizes: number[]) {
  const res = await call(`/v2/${name}/blobs/${digest}`);
  expect(res.status).toBe(200);
  expect(res.headers.get("Content-Length")).toBe(String(data.byteLength));
  expect(await sha256(await bodyBytes(res))).toBe(digest);
  let boundary = 0;
  for (const size of sizes.slice(0, -1)) {
    boundary += size;
    await expectRange(name, digest, data, boundary - 3, boundary + 2);
    await expectRange(name, digest, data, boundary, boundary);
  }
  await expectRange(name, digest, data, 0, data.byteLength - 1);
  const suffix = await call(`/v2/${name}/blobs/${digest}`, { headers: { Range: "bytes=-5" } });
  expect([...(await bodyBytes(suffix))]).toEqual([...data.subarray(data.byteLength - 5)]);
}

async function pointer(name: string, digest: string) {
  const object = await env.REGISTRY.get(`${name}/blobs/${digest}`);
  return { metadata: object?.customMetadata ?? {}, body: await object?.text() };
}

describe("the byte path: how a blob's bytes are stored", () => {
  it("cuts a known-length body into segments that double (16 MiB, 32 MiB, …), at most 4 GiB each", () => {
    expect(segmentSizeAt(0)).toBe(MIN_SEGMENT);
    expect(segmentSizeAt(16 * MiB)).toBe(32 * MiB);
    expect(segmentSizeAt(48 * MiB)).toBe(96 * MiB);
    expect(segmentSizeAt(3 * 1024 * MiB)).toBe(MAX_SEGMENT);
    expect(MAX_SEGMENT).toBeLessThan(4.995 * 1024 * MiB); // one R2 put
    // A resumable chunk: the rest goes in one segment when it is at most twice the next planned one.
    expect(nextSegment(0, 30 * MiB, true)).toBe(30 * MiB);
    expect(nextSegment(0, 50 * MiB, true)).toBe(16 * MiB);
    expect(nextSegment(16 * MiB, 34 * MiB, true)).toBe(34 * MiB);
    expect(nextSegment(3 * 1024 * MiB, 6 * 1024 * MiB, true)).toBe(MAX_SEGMENT);
    // A whole blob in one request: one segment, up to one put's limit.
    expect(nextSegment(0, 1100 * MiB, false)).toBe(1100 * MiB);
    expect(nextSegment(0, 6 * 1024 * MiB, false)).toBe(MAX_SEGMENT);
  });

  it("one known-length PATCH without Content-Range (skopeo): one plain segment, published as a pointer, so a pull reads two objects", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(60 * MiB, 37);
    const { digest, dataKey, segmentsBeforePut } = await upload(name, [{ bytes, how: "known" }]);
    expect(segmentsBeforePut).toEqual([60 * MiB]);
    const { metadata, body } = await pointer(name, digest);
    expect(metadata["r2-registry-data"]).toBe(dataKey);
    expect(JSON.parse(body!)).toEqual({ segments: [60 * MiB] });
    expect((await env.REGISTRY.head(dataKey))?.size).toBe(60 * MiB);
    expect(await keysUnder(`${dataKey}/`)).toEqual([]);
    await expectReadsBack(name, digest, bytes, [16 * MiB, 44 * MiB]);
  });

  it("one resumable PATCH (Content-Range): plain segments that double, published as a pointer listing them, read whole and across each boundary", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(120 * MiB, 21);
    const { digest, dataKey, segmentsBeforePut } = await upload(name, [{ bytes, how: "ranged" }]);
    expect(segmentsBeforePut).toEqual([16 * MiB, 32 * MiB, 72 * MiB]);
    const { metadata, body } = await pointer(name, digest);
    expect(metadata["r2-registry-data"]).toBe(dataKey);
    expect(metadata["r2-registry-segments"]).toBe("3");
    expect(JSON.parse(body!)).toEqual({ segments: segmentsBeforePut });
    expect((await env.REGISTRY.head(`${dataKey}/1`))?.size).toBe(32 * MiB);
    await expectReadsBack(name, digest, bytes, segmentsBeforePut);
  });

  it("one chunked PATCH (unknown length): one segment, a multipart object in parts, read across part boundaries", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(25 * MiB + 17, 22);
    const { digest, segmentsBeforePut } = await upload(name, [{ bytes, how: "chunked" }]);
    expect(segmentsBeforePut).toEqual([bytes.byteLength]);
    // The test configuration's parts are 10 MiB.
    await expectReadsBack(name, digest, bytes, [10 * MiB, 10 * MiB, 5 * MiB + 17]);
  });

  it("several requests of both kinds, the last chunk in the PUT: one segment each, read across every boundary", async () => {
    const name = uniqueName("bytes");
    const pieces = [
      { bytes: bytesOf(7 * MiB + 1, 23), how: "known" as const },
      { bytes: bytesOf(12 * MiB, 24), how: "chunked" as const },
      { bytes: bytesOf(20 * MiB - 1, 25), how: "known" as const },
      { bytes: bytesOf(3 * MiB, 26), how: "known" as const },
    ];
    const { data, digest, dataKey, segmentsBeforePut } = await upload(name, pieces, true);
    expect(segmentsBeforePut).toEqual([7 * MiB + 1, 12 * MiB, 20 * MiB - 1]);
    expect(JSON.parse((await pointer(name, digest)).body!)).toEqual({ segments: pieces.map((p) => p.bytes.byteLength) });
    expect(await keysUnder(`${dataKey}/`)).toHaveLength(3);
    await expectReadsBack(name, digest, data, pieces.map((p) => p.bytes.byteLength));
  });

  it("hashes a request that starts an upload natively, and rebuilds a resumable state from what is stored when another follows", async () => {
    const name = uniqueName("bytes");
    const first = bytesOf(3 * MiB, 34);
    const second = bytesOf(2 * MiB, 35);
    const { location } = await startUpload(name);
    const id = idOf(location);
    const a = await send(location, first, "known");
    expect(a.status).toBe(202);
    const afterFirst = (await session(id)) as { hash?: unknown; digest?: string };
    expect(afterFirst.hash).toBeUndefined();
    expect(afterFirst.digest).toBe(await sha256(first));
    const b = await send(a.headers.get("Location")!, second, "chunked");
    expect(b.status).toBe(202);
    const afterSecond = (await session(id)) as { hash?: { length: number }; digest?: string };
    expect(afterSecond.hash?.length).toBe(first.byteLength + second.byteLength);
    expect(afterSecond.digest).toBeUndefined();
    const digest = await sha256(concat(first, second));
    expect((await call(withQuery(b.headers.get("Location")!, { digest }), { method: "PUT" })).status).toBe(201);
    await expectReadsBack(name, digest, concat(first, second), [first.byteLength, second.byteLength]);
  });

  it("a small blob (≤ 16 MiB) is copied to its blob key: one read on pulls, no pointer, no data left", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(3 * MiB, 27);
    const { digest, dataKey } = await upload(name, [{ bytes: bytes.subarray(0, MiB), how: "known" }, { bytes: bytes.subarray(MiB), how: "chunked" }]);
    const object = await env.REGISTRY.head(`${name}/blobs/${digest}`);
    expect(object?.size).toBe(bytes.byteLength);
    expect(object?.customMetadata?.["r2-registry-data"]).toBeUndefined();
    expect(object?.checksums.sha256 && [...new Uint8Array(object.checksums.sha256)].map((b) => b.toString(16).padStart(2, "0")).join("")).toBe(hexOf(digest));
    expect(await env.REGISTRY.head(dataKey)).toBeNull();
    await expectReadsBack(name, digest, bytes, [MiB, 2 * MiB]);
  });

  it("a monolithic POST with Content-Length goes straight to the blob key, checked by R2; a wrong digest stores nothing", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(20 * MiB, 28);
    const digest = await sha256(bytes);
    const wrong = await call(`/v2/${name}/blobs/uploads/?digest=${await sha256("other")}`, { method: "POST", body: bytes });
    expect(wrong.status).toBe(400);
    expect(await errorCode(wrong)).toBe("DIGEST_INVALID");
    expect(await keysUnder(`${name}/`)).toEqual([]);
    const res = await call(`/v2/${name}/blobs/uploads/?digest=${digest}`, { method: "POST", body: bytes });
    expect(res.status).toBe(201);
    expect((await env.REGISTRY.head(`${name}/blobs/${digest}`))?.size).toBe(bytes.byteLength);
    await expectReadsBack(name, digest, bytes, [bytes.byteLength]);
  });

  for (const how of ["known", "chunked"] as const) {
    it(`a wrong digest at the closing PUT leaves nothing behind (${how} length)`, async () => {
      const name = uniqueName("bytes");
      const bytes = bytesOf(20 * MiB, 29);
      const { location } = await startUpload(name);
      const id = idOf(location);
      const patch = await send(location, bytes, how);
      expect(patch.status).toBe(202);
      const { dataKey } = await session(id);
      expect(await env.REGISTRY.head(dataKey)).not.toBeNull();
      const put = await call(withQuery(patch.headers.get("Location")!, { digest: await sha256("not these bytes") }), { method: "PUT" });
      expect(put.status).toBe(400);
      expect(await errorCode(put)).toBe("DIGEST_INVALID");
      expect(await env.REGISTRY.head(dataKey)).toBeNull();
      expect(await keysUnder(`${dataKey}/`)).toEqual([]);
      expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
      expect(await keysUnder(`${name}/`)).toEqual([]);
    });
  }

  it("a closing PUT sent twice at once, or again after a crash that left the session behind, never loses the published bytes", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(40 * MiB, 36);
    const digest = await sha256(bytes);
    const { location } = await startUpload(name);
    const id = idOf(location);
    expect((await send(location, bytes, "ranged")).status).toBe(202);
    const saved = await (await env.REGISTRY.get(`_uploads/${id}`))!.text();
    const close = () => call(withQuery(location, { digest }), { method: "PUT" });
    const statuses = (await Promise.all([close(), close()])).map((r) => r.status).sort();
    expect(statuses[0]).toBe(201);
    expect([201, 404, 416]).toContain(statuses[1]);
    await expectReadsBack(name, digest, bytes, [MIN_SEGMENT, 24 * MiB]);
    // As if the Worker had stopped after publishing, before removing the session.
    await env.REGISTRY.put(`_uploads/${id}`, saved);
    expect((await close()).status).toBe(201);
    await expectReadsBack(name, digest, bytes, [MIN_SEGMENT, 24 * MiB]);
    // A DELETE of such a session leaves the bytes to the orphan sweep, which sees they are in use.
    await env.REGISTRY.put(`_uploads/${id}`, saved);
    expect((await call(location, { method: "DELETE" })).status).toBe(204);
    await expectReadsBack(name, digest, bytes, [MIN_SEGMENT, 24 * MiB]);
    // Each revival takes the lease key the last request wrote within a second: R2's one write per
    // key per second is waited out (about a second each time).
  }, 15_000);

  it("a resumable PATCH (Content-Range) that breaks off keeps its whole segments; the client resumes from there", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(40 * MiB, 30);
    const { location } = await startUpload(name);
    const id = idOf(location);
    const cut = 20 * MiB;
    await call(location, {
      method: "PATCH",
      body: breaking(bytes.subarray(0, cut)),
      headers: { "Content-Length": String(bytes.byteLength), "Content-Range": `0-${bytes.byteLength - 1}` },
      duplex: "half",
    } as RequestInit).catch(() => undefined);
    const status = await call(location);
    expect(status.status).toBe(204);
    expect(status.headers.get("Range")).toBe(`0-${MIN_SEGMENT - 1}`);
    expect((await session(id)).segments).toEqual([MIN_SEGMENT]);
    const rest = bytes.subarray(MIN_SEGMENT);
    const patch = await call(location, { method: "PATCH", body: rest, headers: { "Content-Range": `${MIN_SEGMENT}-${bytes.byteLength - 1}` } });
    expect(patch.status).toBe(202);
    const digest = await sha256(bytes);
    expect((await call(withQuery(location, { digest }), { method: "PUT" })).status).toBe(201);
    await expectReadsBack(name, digest, bytes, [MIN_SEGMENT, rest.byteLength]);
  });
  it("a whole blob PATCHed without Content-Range that breaks off keeps nothing; the upload stays open at 0", async () => {
    const name = uniqueName("bytes");
    const bytes = bytesOf(40 * MiB, 38);
    const { location } = await startUpload(name);
    const id = idOf(location);
    await call(location, {
      method: "PATCH",
      body: breaking(bytes.subarray(0, 20 * MiB)),
      headers: { "Content-Length": String(bytes.byteLength) },
      duplex: "half",
    } as RequestInit).catch(() => undefined);
    const status = await call(location);
    expect(status.status).toBe(204);
    expect(status.headers.get("Range")).toBe("0-0");
    const { dataKey, segments } = await session(id);
    expect(segments).toEqual([]);
    expect(await env.REGISTRY.head(dataKey)).toBeNull();
    const again = await send(location, bytes, "known");
    expect(again.status).toBe(202);
    const digest = await sha256(bytes);
    expect((await call(withQuery(again.headers.get("Location")!, { digest }), { method: "PUT" })).status).toBe(201);
    await expectReadsBack(name, digest, bytes, [bytes.byteLength]);
  });
});

describe("the byte path: blobs stored by earlier versions still read", () => {
  it("a pointer to one multipart object (r2-registry before segments), whole and in ranges", async () => {
    const name = uniqueName("old");
    const bytes = bytesOf(12 * MiB, 31);
    const digest = await sha256(bytes);
    const dataKey = `_data/${crypto.randomUUID()}`;
    const multipart = await env.REGISTRY.createMultipartUpload(dataKey);
    const parts = [await multipart.uploadPart(1, bytes.subarray(0, 6 * MiB)), await multipart.uploadPart(2, bytes.subarray(6 * MiB))];
    await multipart.complete(parts);
    await env.REGISTRY.put(`${name}/blobs/${digest}`, dataKey, { customMetadata: { "r2-registry-data": dataKey, size: String(bytes.byteLength) } });
    expect((await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" })).headers.get("Content-Length")).toBe(String(bytes.byteLength));
    await expectReadsBack(name, digest, bytes, [6 * MiB, 6 * MiB]);
  });

  it("bytes at the blob key (serverless-registry), whole and in ranges", async () => {
    const name = uniqueName("old");
    const bytes = bytesOf(5 * MiB, 32);
    const digest = await sha256(bytes);
    await env.REGISTRY.put(`${name}/blobs/${digest}`, bytes, { sha256: hexOf(digest) });
    await expectReadsBack(name, digest, bytes, [2 * MiB, 3 * MiB]);
  });

  it("an upload session of the previous format is unknown (the client starts the blob again)", async () => {
    const name = uniqueName("old");
    const id = crypto.randomUUID();
    await env.REGISTRY.put(`_uploads/${id}`, JSON.stringify({ version: 1, id, name, offset: 0, partSize: 10 * MiB, parts: [], tailSerial: 0, tailSize: 0 }));
    const res = await call(`/v2/${name}/blobs/uploads/${id}`, { method: "PATCH", body: "abc" });
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("BLOB_UPLOAD_UNKNOWN");
  });

  it("an upload session of version 2 (one state key holding its lease) is unknown too, and the sweep removes it", async () => {
    const name = uniqueName("old");
    const id = crypto.randomUUID();
    const dataKey = `_data/${crypto.randomUUID()}`;
    await env.REGISTRY.put(`_uploads/${id}`, JSON.stringify({ version: 2, id, name, offset: 0, dataKey, segments: [], createdAt: 0, updatedAt: 0 }));
    for (const init of [{ method: "PATCH", body: "abc" }, { method: "GET" }, { method: "DELETE" }]) {
      const res = await call(`/v2/${name}/blobs/uploads/${id}`, init);
      expect(res.status).toBe(404);
      expect(await errorCode(res)).toBe("BLOB_UPLOAD_UNKNOWN");
    }
    expect((await call("/v2/_gc?upload_age=0", { method: "POST" })).status).toBe(200);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
  });
});

describe("the byte path: memory held per upload", () => {
  // The default part size (8 MiB): the test configuration's 10 MiB is turned off here.
  const defaults = { UPLOAD_PART_SIZE: "" };

  it("a chunked body is held two 8 MiB parts at most; a known-length one two 1 MiB pieces", async () => {
    const name = uniqueName("mem");
    const bytes = bytesOf(40 * MiB, 33);
    heldBytes.reset();
    const a = await startUpload(name);
    expect((await send(a.location, bytes, "chunked", { env: defaults })).status).toBe(202);
    expect(heldBytes.peak).toBeGreaterThan(8 * MiB);
    expect(heldBytes.peak).toBeLessThanOrEqual(16 * MiB);
    expect(heldBytes.current).toBe(0);

    heldBytes.reset();
    const b = await startUpload(name);
    expect((await send(b.location, bytes, "known", { env: defaults })).status).toBe(202);
    // The piece being written and the next one, read and hashed meanwhile: 1 MiB each.
    expect(heldBytes.peak).toBeLessThanOrEqual(2 * MiB);
  });

  it("five chunked uploads at once hold at most 80 MiB together", async () => {
    const name = uniqueName("mem");
    heldBytes.reset();
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map(async (i) => {
        const { location } = await startUpload(name);
        return (await send(location, bytesOf(30 * MiB, 40 + i), "chunked", { env: defaults })).status;
      }),
    );
    expect(results).toEqual([202, 202, 202, 202, 202]);
    expect(heldBytes.peak).toBeGreaterThan(16 * MiB);
    expect(heldBytes.peak).toBeLessThanOrEqual(80 * MiB);
    expect(heldBytes.current).toBe(0);
  });
});
