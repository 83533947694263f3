import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { RegistryError } from "../../src/errors";
import { parseDigest } from "../../src/oci/digest";
import { R2Registry } from "../../src/registry/r2";
import { MAX_PUT, R2Blobs } from "../../src/registry/r2/blobs";
import type { R2Links } from "../../src/registry/r2/links";
import { copyPartSize, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE } from "../../src/registry/r2/multipart";
import { bytesOf, keysUnder, sha256, uniqueName } from "./helpers";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The R2 writes a bucket saw: plain puts, multipart uploads, and how each of those ended. */
interface Writes {
  puts: string[];
  multipart: { key: string; parts: number; ended?: "complete" | "abort" }[];
}

/** The test bucket, recording its writes. */
function recording(bucket: R2Bucket): { bucket: R2Bucket; writes: Writes } {
  const writes: Writes = { puts: [], multipart: [] };
  const wrapped = new Proxy(bucket, {
    get(target, property) {
      const value = Reflect.get(target, property) as unknown;
      if (property === "put") {
        return (key: string, ...rest: unknown[]) => {
          writes.puts.push(key);
          return (value as (...a: unknown[]) => unknown).call(target, key, ...rest);
        };
      }
      if (property === "createMultipartUpload") {
        return async (key: string, ...rest: unknown[]) => {
          const upload = (await (value as (...a: unknown[]) => Promise<R2MultipartUpload>).call(target, key, ...rest)) as R2MultipartUpload;
          const record: Writes["multipart"][number] = { key, parts: 0 };
          writes.multipart.push(record);
          return {
            key: upload.key,
            uploadId: upload.uploadId,
            uploadPart: (...args: Parameters<R2MultipartUpload["uploadPart"]>) => {
              record.parts++;
              return upload.uploadPart(...args);
            },
            complete: (parts: R2UploadedPart[]) => {
              record.ended = "complete";
              return upload.complete(parts);
            },
            abort: () => {
              record.ended = "abort";
              return upload.abort();
            },
          } satisfies R2MultipartUpload;
        };
      }
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { bucket: wrapped, writes };
}

async function sha512(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
  return `sha512:${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function stream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new Response(bytes).body!;
}

async function read(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** A registry whose single writes stop at 8 MiB, with 5 MiB copy parts: R2's limits, scaled down. */
function scaledDown(): { registry: R2Registry; writes: Writes } {
  const { bucket, writes } = recording(env.REGISTRY);
  return { registry: new R2Registry(bucket, { blobLimits: { maxPut: 8 * MiB, copyPartSize: 5 * MiB } }), writes };
}

describe("copies larger than one R2 put", () => {
  it("part sizes: at least 5 MiB and the preferred size, more when 10,000 parts would not do, refused past R2's largest object", () => {
    expect(MAX_PUT).toBeLessThan(4.995 * GiB);
    const blobs = new R2Blobs(env.REGISTRY, {} as R2Links); // what one put takes needs no links index
    expect([blobs.fitsOnePut(MAX_PUT), blobs.fitsOnePut(MAX_PUT + 1)]).toEqual([true, false]);
    expect(copyPartSize(6 * GiB)).toBe(512 * MiB);
    expect(copyPartSize(20 * MiB, 1)).toBe(MIN_PART_SIZE);
    // 10,000 parts of 512 MiB hold 5,000 GiB: one byte more needs larger parts, in whole MiB.
    expect(copyPartSize(MAX_PARTS * 512 * MiB)).toBe(512 * MiB);
    expect(copyPartSize(MAX_PARTS * 512 * MiB + 1)).toBe(513 * MiB);
    expect(Math.ceil((MAX_PARTS * 512 * MiB + 1) / copyPartSize(MAX_PARTS * 512 * MiB + 1))).toBeLessThanOrEqual(MAX_PARTS);
    // R2's largest object (5 TiB less 5 GiB) fits 10,000 parts; one byte more is refused before anything is read.
    expect(Math.ceil(MAX_OBJECT_SIZE / copyPartSize(MAX_OBJECT_SIZE))).toBeLessThanOrEqual(MAX_PARTS);
    expect(copyPartSize(MAX_OBJECT_SIZE)).toBeLessThanOrEqual(MAX_PART_SIZE);
    expect(() => copyPartSize(MAX_OBJECT_SIZE + 1)).toThrow(/larger than .* R2's largest object/);
  });

  it("a sha512 blob above the single-put limit is copied to its key in equal parts, verified before it is completed", async () => {
    const { registry, writes } = scaledDown();
    const name = uniqueName("sha512");
    const bytes = bytesOf(11 * MiB + 123, 5);
    const digest = await sha512(bytes);
    const upload = await registry.startUpload(name);
    // A chunk with its Content-Range (start 0) is stored in the upload's segments.
    await registry.appendUpload(name, upload.id, { body: stream(bytes), length: bytes.byteLength, start: 0 });
    expect(await registry.finishUpload(name, upload.id, digest, { body: null })).toEqual({ digest, size: bytes.byteLength });

    const key = `${name}/blobs/${digest}`;
    expect(writes.puts).not.toContain(key);
    expect(writes.multipart).toEqual([{ key, parts: 3, ended: "complete" }]); // 5 + 5 + 1 MiB
    const blob = await registry.getBlob(name, digest);
    expect(blob?.size).toBe(bytes.byteLength);
    expect(await sha512(await read(blob!.body))).toBe(digest);
    // The upload's own bytes and session are gone.
    expect(await keysUnder(`_uploads/${upload.id}`)).toEqual([]);
  });

  it("a sha512 blob pushed in one request (POST ?digest=) above the limit takes the same path", async () => {
    const { registry, writes } = scaledDown();
    const name = uniqueName("sha512");
    const bytes = bytesOf(9 * MiB, 6);
    const digest = await sha512(bytes);
    await registry.putBlob(name, digest, { body: stream(bytes), length: bytes.byteLength });
    expect(writes.multipart.map((m) => [m.key, m.ended])).toEqual([[`${name}/blobs/${digest}`, "complete"]]);
    expect(await sha512(await read((await registry.getBlob(name, digest))!.body))).toBe(digest);
  });

  it("bytes that do not match the sha512 digest: DIGEST_INVALID, the multipart upload aborted, nothing stored", async () => {
    const { registry, writes } = scaledDown();
    const name = uniqueName("sha512");
    const bytes = bytesOf(11 * MiB, 7);
    const wrong = await sha512(bytesOf(11 * MiB, 8));
    const upload = await registry.startUpload(name);
    await registry.appendUpload(name, upload.id, { body: stream(bytes), length: bytes.byteLength, start: 0 });
    const error = await registry.finishUpload(name, upload.id, wrong, { body: null }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RegistryError);
    expect((error as RegistryError).code).toBe("DIGEST_INVALID");
    expect(writes.multipart).toEqual([{ key: `${name}/blobs/${wrong}`, parts: 3, ended: "abort" }]);
    expect(await keysUnder(`${name}/`)).toEqual([]);
    expect(await registry.statBlob(name, wrong)).toBeNull();
  });

  it("handing serverless-registry's large blob over to a repository that symlinks it copies it in parts", async () => {
    const { registry, writes } = scaledDown();
    const [holder, user] = [uniqueName("holder"), uniqueName("user")];
    const bytes = bytesOf(17 * MiB + 5, 9); // above the 16 MiB copied on mount: mounted as a symlink
    const digest = await sha256(bytes);
    await env.REGISTRY.put(`${holder}/blobs/${digest}`, bytes, { sha256: parseDigest(digest)!.encoded });
    expect(await registry.mountBlob(user, digest, holder)).toEqual({ digest, size: bytes.byteLength });
    expect((await env.REGISTRY.head(`${user}/blobs/${digest}`))?.customMetadata?.["X-Serverless-Registry-Symlink"]).toBe(holder);

    expect(await registry.deleteBlob(holder, digest)).toBe(true);
    expect(writes.multipart).toEqual([{ key: `${user}/blobs/${digest}`, parts: 4, ended: "complete" }]);
    const object = await env.REGISTRY.head(`${user}/blobs/${digest}`);
    expect(object?.customMetadata?.["X-Serverless-Registry-Symlink"]).toBeUndefined();
    expect(object?.size).toBe(bytes.byteLength);
    expect(await sha256(await read((await registry.getBlob(user, digest))!.body))).toBe(digest);
    expect(await registry.statBlob(holder, digest)).toBeNull();
  });
});
