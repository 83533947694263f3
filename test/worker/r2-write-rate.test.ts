import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { refusals } from "../../src/registry/r2/limited";
import { bodyBytes, bytesOf, call, concat, errorCode, keysUnder, OCI_MANIFEST, sha256, startUpload, uniqueName, withQuery } from "./helpers";

/**
 * R2 takes one write of a key per second (https://developers.cloudflare.com/r2/platform/limits/);
 * every workerd test runs on a bucket that refuses more (R2_LIMITS=enforce). These tests push as
 * real clients do and count the writes each key gets.
 */

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One write R2 was asked for: a put, or the completion of a multipart upload. */
interface Write {
  key: string;
  at: number;
}

/** The test bucket, recording every write the Worker makes through it. */
function recording(): { bucket: R2Bucket; writes: Write[] } {
  const writes: Write[] = [];
  const wrap = <T extends object>(target: T, key?: string): T =>
    new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (property === "put") writes.push({ key: args[0] as string, at: Date.now() });
          if (property === "complete") writes.push({ key: key!, at: Date.now() });
          const result = (value as (...a: unknown[]) => unknown).apply(object, args);
          if (property === "createMultipartUpload") return (result as Promise<R2MultipartUpload>).then((upload) => wrap(upload, args[0] as string));
          return result;
        };
      },
    });
  return { bucket: wrap(env.REGISTRY), writes };
}

/** How many times each key was written. */
function perKey(writes: Write[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { key } of writes) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** The keys written, with the upload's id, data key and repository replaced by names. */
function shapes(writes: Write[], id: string, name: string): string[] {
  return writes.map(({ key }) =>
    key
      .replace(id, "<id>")
      .replace(/^_data\/[0-9a-f-]{36}(\.[0-9a-f]{8})?/, "_data/<x>")
      .replace(`${name}/`, "<name>/")
      .replace(/sha256:[0-9a-f]{64}/, "<digest>")
      .replace(/(lease|after)-[1-9]\d*$/, "$1-<n>"),
  );
}

const idOf = (location: string) => location.split("/").pop()!.split("?")[0]!;

/** A body of unknown length (docker's chunked transfer encoding), in pieces of 1 MiB. */
function chunked(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.slice(at, at + MiB));
      at += MiB;
    },
  });
}

describe("each key written at most once a second by an upload", () => {
  it("a small blob as skopeo sends it (POST, one PATCH with Content-Length, PUT): every key once, no 429", async () => {
    const { bucket, writes } = recording();
    const r2 = { env: { REGISTRY: bucket } };
    const name = uniqueName("rate");
    const bytes = bytesOf(3000, 1);
    const digest = await sha256(bytes);
    const before = refusals.writes;
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", ...r2 });
    expect(start.status).toBe(202);
    const id = idOf(start.headers.get("Location")!);
    const patch = await call(start.headers.get("Location")!, { method: "PATCH", body: bytes, ...r2 });
    expect(patch.status).toBe(202);
    const put = await call(withQuery(patch.headers.get("Location")!, { digest }), { method: "PUT", ...r2 });
    expect(put.status).toBe(201);
    expect(refusals.writes).toBe(before);
    expect([...perKey(writes).values()].every((n) => n === 1)).toBe(true);
    // POST: the session's record; PATCH: the blob at its key, the state; PUT: nothing to write.
    expect(shapes(writes, id, name)).toEqual(["_uploads/<id>/created", "<name>/blobs/<digest>", "_uploads/<id>"]);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
    expect(await sha256(await bodyBytes(await call(`/v2/${name}/blobs/${digest}`)))).toBe(digest);
  });

  it("a layer as docker sends it (one chunked PATCH of unknown length, in multipart parts): every key once, no 429", async () => {
    const { bucket, writes } = recording();
    const r2 = { env: { REGISTRY: bucket } };
    const name = uniqueName("rate");
    const bytes = bytesOf(25 * MiB, 2);
    const digest = await sha256(bytes);
    const before = refusals.writes;
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", ...r2 });
    const id = idOf(start.headers.get("Location")!);
    const patch = await call(start.headers.get("Location")!, { method: "PATCH", body: chunked(bytes), duplex: "half", ...r2 } as RequestInit);
    expect(patch.status).toBe(202);
    expect((await call(withQuery(patch.headers.get("Location")!, { digest }), { method: "PUT", ...r2 })).status).toBe(201);
    expect(refusals.writes).toBe(before);
    expect([...perKey(writes).values()].every((n) => n === 1)).toBe(true);
    // The bytes are one multipart object (parts of 10 MiB here), published by a pointer. The
    // upload's first request and its closing PUT take no lease.
    expect(shapes(writes, id, name)).toEqual(["_uploads/<id>/created", "_data/<x>", "_uploads/<id>", `_links/<digest>/${name}`, "<name>/blobs/<digest>"]);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
    expect(await sha256(await bodyBytes(await call(`/v2/${name}/blobs/${digest}`)))).toBe(digest);
  });

  it("a layer as the push tool sends it (Content-Range PATCHes in quick succession): the state in write-once records, no 429", async () => {
    const { bucket, writes } = recording();
    const r2 = { env: { REGISTRY: bucket } };
    const name = uniqueName("rate");
    const chunks = [bytesOf(MiB, 3), bytesOf(MiB, 4), bytesOf(MiB + 7, 5), bytesOf(5, 6)];
    const data = concat(...chunks);
    const digest = await sha256(data);
    const before = refusals.writes;
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", ...r2 });
    let location = start.headers.get("Location")!;
    const id = idOf(location);
    let offset = 0;
    for (const chunk of chunks) {
      const patch = await call(location, {
        method: "PATCH",
        body: chunk,
        headers: { "Content-Range": `${offset}-${offset + chunk.byteLength - 1}` },
        ...r2,
      });
      expect(patch.status).toBe(202);
      offset += chunk.byteLength;
      expect(patch.headers.get("Range")).toBe(`0-${offset - 1}`);
      location = patch.headers.get("Location")!;
      // Where to resume, as GET tells a client that lost track.
      expect((await call(location, r2)).headers.get("Range")).toBe(`0-${offset - 1}`);
    }
    expect((await call(withQuery(location, { digest }), { method: "PUT", ...r2 })).status).toBe(201);
    expect(refusals.writes).toBe(before);
    expect([...perKey(writes).values()].every((n) => n === 1)).toBe(true);
    // The first PATCH: a segment under a data key of its own and the state (no lease: nothing else
    // writes there); each next one a lease, a segment and (within 2 s of the state) its own
    // write-once record after the offset it started from; the PUT only the blob.
    expect(shapes(writes, id, name)).toEqual([
      "_uploads/<id>/created",
      ...["_data/<x>", "_uploads/<id>"],
      ...["_uploads/<id>/lease-<n>", "_data/<x>/1", "_uploads/<id>/after-<n>"],
      ...["_uploads/<id>/lease-<n>", "_data/<x>/2", "_uploads/<id>/after-<n>"],
      ...["_uploads/<id>/lease-<n>", "_data/<x>/3", "_uploads/<id>/after-<n>"],
      "<name>/blobs/<digest>",
    ]);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
    expect(await sha256(await bodyBytes(await call(`/v2/${name}/blobs/${digest}`)))).toBe(digest);
  });

  it("chunks further apart rewrite the state (at least 2 s after its last write), and every record goes when the upload ends", async () => {
    const { bucket, writes } = recording();
    const r2 = { env: { REGISTRY: bucket } };
    const name = uniqueName("rate");
    const chunks = [bytesOf(1000, 7), bytesOf(1000, 8), bytesOf(1000, 9), bytesOf(1000, 10)];
    const data = concat(...chunks);
    const before = refusals.writes;
    let { location } = await startUpload(name);
    const id = idOf(location);
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      if (i === 2) await sleep(2100);
      const patch = await call(location, { method: "PATCH", body: chunk, headers: { "Content-Range": `${offset}-${offset + chunk.byteLength - 1}` }, ...r2 });
      expect(patch.status).toBe(202);
      offset += chunk.byteLength;
      location = patch.headers.get("Location")!;
    }
    const state = writes.filter((w) => w.key === `_uploads/${id}`);
    expect(state).toHaveLength(2);
    expect(state[1]!.at - state[0]!.at).toBeGreaterThanOrEqual(2000);
    expect(writes.filter((w) => w.key.startsWith(`_uploads/${id}/after-`)).map((w) => w.key)).toEqual([`_uploads/${id}/after-1000`, `_uploads/${id}/after-3000`]);
    expect((await call(location, r2)).headers.get("Range")).toBe(`0-${data.byteLength - 1}`);
    const digest = await sha256(data);
    expect((await call(withQuery(location, { digest }), { method: "PUT", ...r2 })).status).toBe(201);
    expect(refusals.writes).toBe(before);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
    expect(await sha256(await bodyBytes(await call(`/v2/${name}/blobs/${digest}`)))).toBe(digest);
  }, 15_000);
});

describe("clients racing on one key", () => {
  it("20 clients pushing one image under 20 tags of one repository at once: 201 or 503 with Retry-After, never a 500, and every tag pushed reads back", async () => {
    const name = uniqueName("race");
    const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
    const layer = bytesOf(40_000, 11);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: await sha256(config), size: config.byteLength },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: await sha256(layer), size: layer.byteLength }],
    });
    const manifestDigest = await sha256(manifest);
    const answers: Response[] = [];
    const answer = (response: Response) => {
      answers.push(response);
      return response;
    };
    const client = async (i: number): Promise<boolean> => {
      for (const blob of [config, layer]) {
        const digest = await sha256(blob);
        const start = answer(await call(`/v2/${name}/blobs/uploads/`, { method: "POST" }));
        if (start.status !== 202) return false;
        const patch = answer(await call(start.headers.get("Location")!, { method: "PATCH", body: blob }));
        if (patch.status !== 202) return false;
        const put = answer(await call(withQuery(patch.headers.get("Location")!, { digest }), { method: "PUT" }));
        if (put.status !== 201) return false;
      }
      const put = answer(await call(`/v2/${name}/manifests/tag-${i}`, { method: "PUT", body: manifest, headers: { "Content-Type": OCI_MANIFEST } }));
      return put.status === 201;
    };
    const pushed = await Promise.all(Array.from({ length: 20 }, (_, i) => client(i)));
    for (const response of answers) {
      expect([201, 202, 503]).toContain(response.status);
      if (response.status === 503) {
        expect(response.headers.get("Retry-After")).toBe("1");
        expect(await errorCode(response)).toBe("UNAVAILABLE");
      }
    }
    expect(pushed.filter(Boolean).length).toBeGreaterThan(0);
    for (const [i, ok] of pushed.entries()) {
      if (!ok) continue;
      const res = await call(`/v2/${name}/manifests/tag-${i}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("Docker-Content-Digest")).toBe(manifestDigest);
    }
    for (const blob of [config, layer]) expect(await sha256(await bodyBytes(await call(`/v2/${name}/blobs/${await sha256(blob)}`)))).toBe(await sha256(blob));
  }, 60_000);

  /** The test bucket, with R2's 429 (error 10058) on writes of keys matching `stuck`, `times` times (all when absent). */
  function throttled(stuck: RegExp, times = Infinity): R2Bucket {
    let left = times;
    return new Proxy(env.REGISTRY, {
      get(object, property) {
        const value = Reflect.get(object, property) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (property === "put" && stuck.test(args[0] as string) && left-- > 0) {
            if (args[1] instanceof ReadableStream) void args[1].cancel();
            return Promise.reject(new Error("put: Reduce your concurrent request rate for the same object. (10058)"));
          }
          return (value as (...a: unknown[]) => unknown).apply(object, args);
        };
      },
    });
  }

  it("R2's 429 is tried again, and when it persists the client gets 503 UNAVAILABLE with Retry-After, not a 500", async () => {
    const name = uniqueName("throttled");
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" }, layers: [] });
    const put = (tag: string, bucket: R2Bucket) => call(`/v2/${name}/manifests/${tag}`, { method: "PUT", body: manifest, headers: { "Content-Type": OCI_MANIFEST }, env: { REGISTRY: bucket } });
    // Once: the retry succeeds.
    expect((await put("flaky", throttled(/\/manifests\/flaky$/, 1))).status).toBe(201);
    // Always: 503 after about 1.5 s of tries.
    const stuck = await put("stuck", throttled(/\/manifests\/stuck$/));
    expect(stuck.status).toBe(503);
    expect(stuck.headers.get("Retry-After")).toBe("1");
    expect(await errorCode(stuck)).toBe("UNAVAILABLE");
    // A blob streamed from the client cannot be sent again: 503 at once.
    const bytes = bytesOf(1000, 12);
    const digest = await sha256(bytes);
    const blob = await call(`/v2/${name}/blobs/uploads/?digest=${digest}`, { method: "POST", body: bytes, env: { REGISTRY: throttled(/\/blobs\//) } });
    expect(blob.status).toBe(503);
    expect(blob.headers.get("Retry-After")).toBe("1");
    expect((await call(`/v2/${name}/manifests/stuck`)).status).toBe(404);
  }, 15_000);
});
