import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import worker from "../../src/index";
import type { Env } from "../../src/env";
import { afterEach, describe, expect, it, vi } from "vitest";
import { metered } from "../../src/registry/r2/metered";
import { bytesOf, call, imageManifest, OCI_MANIFEST, ORIGIN, putManifest, RW, uniqueName } from "./helpers";

describe("R2 operation counts (LOG_R2_OPERATIONS)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("counts by pricing class, multipart uploads included", async () => {
    const { bucket, usage } = metered(env.REGISTRY);
    const key = `metering/${crypto.randomUUID()}`;
    const upload = await bucket.createMultipartUpload(key);
    const part = await upload.uploadPart(1, bytesOf(1000, 1));
    await upload.complete([part]);
    await bucket.head(key);
    await (await bucket.get(key))?.arrayBuffer();
    await bucket.list({ prefix: "metering/" });
    await bucket.delete(key);
    await bucket.resumeMultipartUpload(key, (await bucket.createMultipartUpload(key)).uploadId).abort();
    expect(usage).toEqual({ classA: 5, classB: 2, free: 2 });
  });

  it("logs what each request cost", async () => {
    const name = uniqueName("metering");
    const image = await imageManifest(name, 1);
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const res = await call(`/v2/${name}/manifests/v1`, { method: "HEAD", env: { LOG_R2_OPERATIONS: "true" } });
    expect(res.status).toBe(200);
    expect(log).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^r2-registry: R2 operations for HEAD /v2/${name}/manifests/v1: class A 0, class B 1, free 0 \\(answered in \\d+ ms, done in \\d+ ms\\)$`)));
    log.mockClear();
    await call(`/v2/${name}/manifests/v1`, { method: "HEAD" });
    expect(log).not.toHaveBeenCalled();
  });

  it("a manifest push reads each key it needs once", async () => {
    const name = uniqueName("metering");
    const image = await imageManifest(name, 2);
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const push = () => call(`/v2/${name}/manifests/v1`, { method: "PUT", body: image.text, headers: { "Content-Type": OCI_MANIFEST }, env: { LOG_R2_OPERATIONS: "true" } });
    const firstBegan = Date.now();
    expect((await push()).status).toBe(201);
    const firstEnded = Date.now();
    // Writes: the collection intent, the digest key, the tag key and the catalog marker. Reads: the
    // collection state, the digest key (absent: it is not read again before it is written), the two
    // blobs, the tag key and the marker. The intent's removal is free.
    expect(log).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^r2-registry: R2 operations for PUT /v2/${name}/manifests/v1: class A 4, class B 6, free 1 \\(`)));
    log.mockClear();
    // The same push again: the manifest is there, so no blob is read; the digest key is read
    // again before it is written (a delete meanwhile must not leave the tag without it). Within
    // 2 s of their last write the keys are not written again (R2 takes one write of a key a
    // second): then only the intent is; later the digest and tag keys too. Either count holds
    // only near the 2 s mark, where the two clocks (the Worker's and the bucket's) may disagree.
    const secondBegan = Date.now();
    expect((await push()).status).toBe(201);
    const classA = Date.now() - firstBegan < 1500 ? "1" : secondBegan - firstEnded >= 2500 ? "3" : "[13]";
    expect(log).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^r2-registry: R2 operations for PUT /v2/${name}/manifests/v1: class A ${classA}, class B 5, free 1 \\(`)));
    const tagged = await call(`/v2/${name}/manifests/v1`);
    expect(tagged.headers.get("Docker-Content-Digest")).toBe(image.digest);
    expect(await tagged.text()).toBe(image.text);
  });

  it("counts the reads a blob stored in segments makes while its body streams", async () => {
    const name = uniqueName("metering");
    const bytes = bytesOf(40 * 1024 * 1024, 3);
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: "POST" });
    // A resumable chunk (Content-Range) is stored in segments: 16 MiB and 24 MiB.
    const patch = await call(start.headers.get("Location")!, { method: "PATCH", body: bytes, headers: { "Content-Range": `0-${bytes.byteLength - 1}` } });
    expect(patch.status).toBe(202);
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const digest = `sha256:${[...hash].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
    expect((await call(`${patch.headers.get("Location")!}?digest=${digest}`, { method: "PUT" })).status).toBe(201);
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    // As a client does: read the body while the Worker streams it (`call` would wait for the
    // background work first, which waits for this reader).
    const ctx = createExecutionContext();
    const request = new Request(`${ORIGIN}/v2/${name}/blobs/${digest}`, { headers: { Authorization: RW } });
    const res = await worker.fetch(request, { ...env, LOG_R2_OPERATIONS: "true" } as Env, ctx);
    expect((await res.arrayBuffer()).byteLength).toBe(bytes.byteLength);
    await waitOnExecutionContext(ctx);
    // The pointer, then its two segments (16 MiB and 24 MiB).
    expect(log).toHaveBeenCalledWith(expect.stringMatching(new RegExp(`^r2-registry: R2 operations for GET /v2/${name}/blobs/${digest}: class A 0, class B 3, free 0 \\(`)));
  });
});
