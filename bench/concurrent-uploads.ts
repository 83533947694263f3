/**
 * Memory held by uploads in flight: five generated 1 GiB blobs uploaded at once, while workerd's
 * RSS is sampled, once with chunked bodies (no Content-Length, as docker sends them) and once with
 * known-length ones, each on a fresh server warmed by one small upload. The figure is the peak RSS
 * minus the RSS at rest. Locally the R2 simulator runs inside the same workerd process, so what it
 * holds counts too; the same uploads into the minimal Worker of bench/baseline-worker (a streamed
 * `bucket.put` per known-length body, 16 MiB multipart parts for a chunked one) show that share.
 *
 * r2-registry: each upload is POST, ONE PATCH of the whole blob, then the closing PUT.
 */
import { createHash } from "node:crypto";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { GeneratedBlob } from "../test/e2e/lib/generated-blob.ts";
import { sleep } from "../test/e2e/lib/processes.ts";
import { sampleMemory } from "./memory.ts";
import { expectStatus, send, type Target } from "./lib.ts";
import { authOf, blobStream, streamUpload } from "./http-stream.ts";
import { startBaselineWorker } from "./streaming-floor.ts";

export interface HeldMemory {
  /** workerd's RSS at rest, and its peak during the uploads (bytes). */
  rest: number;
  peak: number;
  /** Seconds until every upload was finished. */
  seconds: number;
}

/** Uploads one blob; `name` tells it from the others. */
type Upload = (name: string, blob: GeneratedBlob, knownLength: boolean) => Promise<void>;

const octets = (blob: GeneratedBlob, knownLength: boolean) => ({
  "content-type": "application/octet-stream",
  ...(knownLength ? { "content-length": String(blob.size) } : {}),
});

/** r2-registry: POST, one PATCH of the whole blob, closing PUT. */
function registryUpload(target: Target): Upload {
  return async (name, blob, knownLength) => {
    const started = expectStatus(await send(target, "POST", `/v2/bench/${name}/blobs/uploads/`), 202, "POST");
    const hash = createHash("sha256");
    const stream = blobStream(blob, (c) => hash.update(c));
    const patched = await streamUpload("PATCH", new URL(String(started.headers.location), target.url), { ...authOf(target), ...octets(blob, knownLength) }, stream);
    if (patched.status !== 202) throw new Error(`PATCH: ${patched.status} ${patched.body}`);
    const finish = new URL(String(patched.headers.location), target.url);
    finish.searchParams.set("digest", `sha256:${hash.digest("hex")}`);
    expectStatus(await send(target, "PUT", finish.pathname + finish.search), 201, "PUT");
  };
}

/** The minimal Worker: one streamed put, or (chunked) POST, one PATCH cut into parts, PUT. */
function minimalUpload(url: string): Upload {
  return async (name, blob, knownLength) => {
    if (knownLength) {
      const put = await streamUpload("PUT", `${url}/object-${name}`, octets(blob, true), blobStream(blob, () => {}));
      if (put.status !== 201) throw new Error(`PUT /object: ${put.status} ${put.body}`);
      return;
    }
    const location = String(expectStatus(await send({ label: "minimal", url }, "POST", "/upload"), 202, "POST").headers.location);
    const patched = await streamUpload("PATCH", new URL(location, url), octets(blob, false), blobStream(blob, () => {}));
    if (patched.status !== 202) throw new Error(`PATCH /upload: ${patched.status} ${patched.body}`);
    const done = await send({ label: "minimal", url }, "PUT", String(patched.headers.location), { "content-type": "application/json" }, patched.body);
    expectStatus(done, 201, "PUT /upload");
  };
}

/** Warms the server with one small upload, samples it at rest, then runs `count` uploads at once. */
async function held(pid: number, upload: Upload, count: number, bytes: number, knownLength: boolean): Promise<HeldMemory> {
  await upload("warm-up", new GeneratedBlob(2 ** 20), knownLength);
  const resting = sampleMemory(pid, /workerd/, 100);
  await sleep(2000);
  const rest = resting.stop();
  const memory = sampleMemory(pid, /workerd/, 100);
  const began = performance.now();
  await Promise.all(Array.from({ length: count }, (_, i) => upload(`concurrent-${i}`, new GeneratedBlob(bytes), knownLength)));
  return { rest, peak: memory.stop(), seconds: (performance.now() - began) / 1000 };
}

/** `count` uploads of `bytes` each at once into a fresh r2-registry. */
export async function measureConcurrentUploads(count: number, bytes: number, knownLength: boolean): Promise<HeldMemory> {
  const server = await startDevServer({ env: { WRANGLER_LOG: "warn" } }); // as the minimal Workers: no per-request log line
  try {
    const target: Target = { label: "r2-registry", url: server.url, username: server.username, password: server.password };
    return await held(server.process.child.pid!, registryUpload(target), count, bytes, knownLength);
  } finally {
    await server.stop();
  }
}

/** The same into a fresh minimal Worker. */
export async function measureMinimalConcurrentUploads(count: number, bytes: number, knownLength: boolean): Promise<HeldMemory> {
  const worker = await startBaselineWorker();
  try {
    return await held(worker.pid, minimalUpload(worker.url), count, bytes, knownLength);
  } finally {
    await worker.stop();
  }
}
