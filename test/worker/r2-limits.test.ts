import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { FREE_SUBREQUESTS, limited, R2_LIMITS, refusals } from "../../src/registry/r2/limited";
import { bytesOf, call, errorCode, imageManifest, OCI_MANIFEST, putManifest, sha256, uniqueName, withQuery } from "./helpers";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A bucket with Cloudflare's limits, over the test bucket, in a write log of its own. */
function bucket(options: Parameters<typeof limited>[1] = {}): R2Bucket {
  return limited(env.REGISTRY, { scope: `limits-test-${crypto.randomUUID()}`, ...options });
}

/** The message an R2 call was refused with. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("the call was not refused");
}

describe("the local R2 simulator", () => {
  it("treats etagDoesNotMatch: '*' as create-only (an old miniflare had it reversed)", async () => {
    const key = `limits/create-only/${crypto.randomUUID()}`;
    expect(await env.REGISTRY.put(key, "first", { onlyIf: { etagDoesNotMatch: "*" } })).not.toBeNull();
    expect(await env.REGISTRY.put(key, "second", { onlyIf: { etagDoesNotMatch: "*" } })).toBeNull();
    expect(await (await env.REGISTRY.get(key))!.text()).toBe("first");
  });
});

describe("a bucket with Cloudflare's R2 limits", () => {
  it("answers a second write of one key within a second with R2's 429 (10058), and takes it a second later", async () => {
    const r2 = bucket();
    const key = `limits/rate/${crypto.randomUUID()}`;
    await r2.put(key, "1");
    expect(await refusal(r2.put(key, "2"))).toBe("put: Reduce your concurrent request rate for the same object. (10058)");
    // Another key, a read and a delete are not writes of this key.
    await r2.put(`${key}-other`, "1");
    expect(await (await r2.get(key))!.text()).toBe("1");
    await sleep(R2_LIMITS.writeIntervalMs + 50);
    await r2.put(key, "2");
    expect(await (await r2.get(key))!.text()).toBe("2");
  });

  it("holds the rule across invocations (separate wrappers over one bucket), and refuses a write while another is in flight", async () => {
    const scope = `limits-test-${crypto.randomUUID()}`;
    const key = `limits/across/${crypto.randomUUID()}`;
    const results = await Promise.allSettled([limited(env.REGISTRY, { scope }).put(key, "a"), limited(env.REGISTRY, { scope }).put(key, "b")]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect(await refusal(limited(env.REGISTRY, { scope }).put(key, "c"))).toMatch(/\(10058\)$/);
  });

  it("does not count deletes, nor a conditional write that stored nothing", async () => {
    const r2 = bucket();
    const key = `limits/conditional/${crypto.randomUUID()}`;
    await env.REGISTRY.put(key, "there");
    expect(await r2.put(key, "new", { onlyIf: { etagDoesNotMatch: "*" } })).toBeNull();
    expect(await r2.put(key, "new")).not.toBeNull();
    await r2.delete(key);
    await r2.delete(key);
    expect(await refusal(r2.put(key, "again"))).toMatch(/\(10058\)$/);
  });

  it("refuses keys longer than 1,024 bytes of UTF-8", async () => {
    const r2 = bucket();
    const longest = `limits/${"k".repeat(R2_LIMITS.keyBytes - "limits/".length)}`;
    await r2.put(longest, "fits");
    expect(await r2.head(longest)).not.toBeNull();
    const tooLong = `limits/${"é".repeat(510)}`; // 7 + 1,020 bytes
    expect(await refusal(r2.put(tooLong, "x"))).toMatch(/^put: .*\(10020\)$/);
    expect(await refusal(r2.get(tooLong))).toMatch(/^get: .*\(10020\)$/);
    expect(await refusal(r2.delete([tooLong]))).toMatch(/^delete: .*\(10020\)$/);
    await r2.delete(longest);
  });

  it("refuses a put larger than one upload of known length (4.995 GiB), and lists and deletes of more than 1,000 keys", async () => {
    expect(R2_LIMITS.maxUpload).toBe(5 * 1024 * MiB - 5 * MiB);
    // A lowered size limit stands in for 5 GiB of memory.
    const r2 = bucket({ limits: { maxUpload: MiB } });
    const key = `limits/size/${crypto.randomUUID()}`;
    expect(await refusal(r2.put(key, new Uint8Array(MiB + 1)))).toBe(
      "put: Your proposed upload exceeds the maximum allowed object size. (100100)",
    );
    await r2.put(key, new Uint8Array(MiB));
    expect(await refusal(r2.list({ limit: 1001 }))).toMatch(/^list: .*<= 1000\. \(10022\)$/);
    expect((await r2.list({ prefix: key, limit: 1000 })).objects).toHaveLength(1);
    const keys = Array.from({ length: 1001 }, (_, i) => `${key}/${i}`);
    expect(await refusal(r2.delete(keys))).toBe("delete: The number of keys in the request must be between 1 and 1000 inclusive. (10027)");
    expect(await refusal(r2.delete([]))).toMatch(/\(10027\)$/);
    await r2.delete(keys.slice(0, 1000));
    await r2.delete(key);
  });

  it("refuses multipart parts outside 5 MiB–4.995 GiB (but the last), of different sizes, or numbered past 10,000", async () => {
    const r2 = bucket();
    const key = `limits/multipart/${crypto.randomUUID()}`;
    const parts = async (...sizes: number[]) => {
      const upload = await r2.createMultipartUpload(key);
      const done = [];
      for (const [i, size] of sizes.entries()) done.push(await upload.uploadPart(i + 1, new Uint8Array(size)));
      return { upload, done };
    };
    let { upload, done } = await parts(4 * MiB, 4 * MiB);
    expect(await refusal(upload.complete(done))).toMatch(/^complete: .*\(10011\)$/);
    await upload.abort();
    ({ upload, done } = await parts(5 * MiB, 6 * MiB, MiB));
    expect(await refusal(upload.complete(done))).toBe("complete: All non-trailing parts must have the same length. (10048)");
    await upload.abort();
    ({ upload, done } = await parts(5 * MiB, 6 * MiB));
    expect(await refusal(upload.complete(done))).toMatch(/\(10048\)$/);
    await upload.abort();
    expect(await refusal(upload.uploadPart(10_001, new Uint8Array(1)))).toMatch(/^uploadPart: .*\(10022\)$/);
    const capped = await bucket({ limits: { maxUpload: MiB } }).createMultipartUpload(key);
    expect(await refusal(capped.uploadPart(1, new Uint8Array(MiB + 1)))).toMatch(/\(100100\)$/);
    await capped.abort();
    ({ upload, done } = await parts(5 * MiB, 5 * MiB, 2 * MiB));
    expect((await upload.complete(done)).size).toBe(12 * MiB);
    await env.REGISTRY.delete(key);
  });

  it("counts every call of an invocation against its subrequest budget (50 on Workers Free)", async () => {
    const r2 = bucket({ subrequests: FREE_SUBREQUESTS });
    for (let i = 0; i < FREE_SUBREQUESTS; i++) await r2.head("limits/none");
    expect(await refusal(r2.head("limits/none"))).toMatch(/^Too many API requests by single Worker invocation/);
    // The next invocation has a budget of its own.
    expect(await bucket({ subrequests: FREE_SUBREQUESTS }).head("limits/none")).toBeNull();
  });
});

describe("the Worker on a bucket with the limits (R2_LIMITS=enforce, as every workerd test runs)", () => {
  it("pushes and pulls an image within Workers Free's 50 subrequests a request, and one that needs more fails as on Cloudflare", async () => {
    const free = { R2_LIMITS: "enforce", R2_SUBREQUEST_LIMIT: String(FREE_SUBREQUESTS) };
    const name = uniqueName("limits");
    const before = refusals.other;
    const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
    const layer = bytesOf(2000, 7);
    const blobs = [];
    for (const bytes of [config, layer]) {
      const digest = await sha256(bytes);
      const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST", env: free });
      expect(start.status).toBe(202);
      const patch = await call(start.headers.get("Location")!, { method: "PATCH", body: bytes, env: free });
      expect(patch.status).toBe(202);
      expect((await call(withQuery(patch.headers.get("Location")!, { digest }), { method: "PUT", env: free })).status).toBe(201);
      blobs.push({ digest, size: bytes.byteLength });
    }
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...blobs[0] },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...blobs[1] }],
    });
    const put = await call(`/v2/${name}/manifests/v1`, { method: "PUT", body: manifest, headers: { "Content-Type": OCI_MANIFEST }, env: free });
    expect(put.status).toBe(201);
    expect((await call(`/v2/${name}/manifests/v1`, { env: free })).status).toBe(200);
    expect((await call(`/v2/${name}/blobs/${blobs[1]!.digest}`, { env: free })).status).toBe(200);
    expect(refusals.other).toBe(before);
    // A registry-wide collection reads every repository's keys: far more than 50 R2 calls.
    for (let i = 0; i < 10; i++) {
      const other = uniqueName("limits");
      expect((await putManifest(other, "v1", (await imageManifest(other, i)).text)).status).toBe(201);
    }
    const gc = await call("/v2/_gc?dry_run=true", { method: "POST", env: free });
    expect(gc.status).toBe(500);
    expect(await errorCode(gc)).toBe("UNKNOWN");
    expect(refusals.other).toBeGreaterThan(before);
  });
});
