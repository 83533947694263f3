import { env } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { metered } from "../../src/registry/r2/metered";
import { bytesOf, call, imageManifest, putManifest, uniqueName } from "./helpers";

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
    expect(log).toHaveBeenCalledWith(`r2-registry: R2 operations for HEAD /v2/${name}/manifests/v1: class A 0, class B 1, free 0`);
    log.mockClear();
    await call(`/v2/${name}/manifests/v1`, { method: "HEAD" });
    expect(log).not.toHaveBeenCalled();
  });
});
