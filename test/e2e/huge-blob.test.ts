/**
 * A layer larger than 5 GiB (R2's limit for one put, which the original's closing copy hits):
 * pushed in 100 MB chunks as the push tool and chunking clients send it, finished, found by HEAD
 * with its size and digest, read back across the 5 GiB mark and at its end, and referenced by a
 * manifest. The bytes are generated, not stored on the test's side.
 * Set E2E_SKIP_BIG=1 to leave this file out (it writes 5.1 GiB through the disk); it also skips,
 * saying so, when the temp dir has less than 8 GiB free.
 */
import { createHash } from "node:crypto";
import { statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registryLogsOnFailure } from "./lib/harness.ts";
import { GeneratedBlob, pushGenerated } from "./lib/generated-blob.ts";
import { describeResponse, headerValue } from "./lib/http.ts";
import { startTestRegistry, targetKind, type TestRegistry } from "./lib/target.ts";

const SIZE = Math.round(5.1 * 2 ** 30);
const FIVE_GIB = 5 * 2 ** 30;
const MiB = 2 ** 20;
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

const free = (() => {
  const fs = statfsSync(tmpdir());
  return fs.bavail * fs.bsize;
})();
const tooLittleSpace = free < 8 * 2 ** 30;
if (tooLittleSpace && process.env.E2E_SKIP_BIG !== "1") {
  console.warn(`huge-blob.test.ts skipped: ${tmpdir()} has ${(free / 2 ** 30).toFixed(1)} GiB free, it needs 8 GiB`);
}

describe.skipIf(process.env.E2E_SKIP_BIG === "1" || tooLittleSpace)(`a 5.1 GiB layer against ${targetKind()}`, () => {
  let reg: TestRegistry | undefined;
  const blob = new GeneratedBlob(SIZE);
  let digest: string;

  beforeAll(async () => {
    reg = await startTestRegistry();
  });
  afterAll(() => reg?.stop());
  registryLogsOnFailure(() => reg);

  it("is pushed in 100 MB chunks and finishes", { timeout: 1_800_000 }, async () => {
    const up = await pushGenerated(reg!.client, "big/huge", blob, 100_000_000);
    digest = up.digest;
    console.log(`5.1 GiB layer: ${up.chunks} PATCHes in ${up.patchSeconds.toFixed(1)} s, closing PUT ${up.putSeconds.toFixed(2)} s`);
    const head = await reg!.client.blob("big/huge", digest, "HEAD");
    expect(head.status, describeResponse("HEAD", digest, head)).toBe(200);
    expect(headerValue(head, "content-length")).toBe(String(SIZE));
    expect(headerValue(head, "docker-content-digest")).toBe(digest);
  });

  it("serves the bytes across the 5 GiB mark and at its end", { timeout: 300_000 }, async () => {
    expect(digest, "the push failed").toBeDefined();
    for (const [start, length] of [[FIVE_GIB - MiB, 2 * MiB], [SIZE - MiB - 3, MiB + 3], [0, MiB]] as const) {
      const res = await reg!.client.request("GET", `/v2/big/huge/blobs/${digest}`, { range: `bytes=${start}-${start + length - 1}` });
      expect(res.status, describeResponse("GET", `${start}+${length}`, res)).toBe(206);
      expect(headerValue(res, "content-range")).toBe(`bytes ${start}-${start + length - 1}/${SIZE}`);
      expect(res.body.length).toBe(length);
      expect(res.body.equals(blob.bytes(start, length)), `bytes ${start}-${start + length - 1} differ`).toBe(true);
    }
  });

  it("is the layer of a manifest that pulls back by digest", async () => {
    expect(digest, "the push failed").toBeDefined();
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [digest] } }));
    const configDigest = `sha256:${createHash("sha256").update(config).digest("hex")}`;
    const post = await reg!.client.request("POST", `/v2/big/huge/blobs/uploads/?digest=${configDigest}`, { "content-type": "application/octet-stream" }, config);
    expect(post.status, describeResponse("POST", configDigest, post)).toBe(201);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest, size: SIZE }],
    });
    const put = await reg!.client.request("PUT", "/v2/big/huge/manifests/v1", { "content-type": OCI_MANIFEST }, manifest);
    expect(put.status, describeResponse("PUT", "v1", put)).toBe(201);
    const got = await reg!.client.manifest("big/huge", "v1", [OCI_MANIFEST]);
    expect(got.body.toString("utf8")).toBe(manifest);
    expect(headerValue(got, "docker-content-digest")).toBe(`sha256:${createHash("sha256").update(manifest).digest("hex")}`);
  });
});
