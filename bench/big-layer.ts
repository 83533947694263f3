/**
 * Benchmark: a 1.1 GiB single-layer image pushed and pulled with skopeo (median of BENCH_RUNS,
 * default 3, a fresh server each run), the latency of the closing PUT of a 1.1 GiB upload, and the
 * registry processes' peak memory, for r2-registry (`pnpm dev`: workerd + local R2) and
 * distribution 2.8 (filesystem) on this machine.
 *
 * Against the floor of the same setup: the minimal Worker of bench/baseline-worker taking the
 * layer as one streamed `bucket.put` and serving it back (bench/streaming-floor.ts).
 *
 * Then the memory at rest, and the peak memory while a generated 2 GiB blob goes in as 100 MB
 * PATCHes (as the push tool sends it): flat memory means the peaks do not grow with the size; the
 * time of a GET of the layer pushed in one chunked PATCH (as docker sends it); and the memory five
 * 1 GiB uploads at once hold (bench/concurrent-uploads.ts). Every target of the issue is printed
 * as met or not.
 *
 * Run: pnpm bench big-layer   (BENCH_BIG_BYTES, BENCH_CHUNKED_BYTES, BENCH_CONCURRENT_BYTES to
 * change the sizes)
 */
import { createReadStream } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { writeBigImage } from "../test/e2e/lib/big-image.ts";
import { GeneratedBlob, pushGenerated } from "../test/e2e/lib/generated-blob.ts";
import { RegistryClient } from "../test/e2e/lib/http.ts";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { mib, sampleMemory } from "./memory.ts";
import { expectStatus, median, ratio, send, table, type Target } from "./lib.ts";
import { measureConcurrentUploads, measureMinimalConcurrentUploads, type HeldMemory } from "./concurrent-uploads.ts";
import { authOf, drain } from "./http-stream.ts";
import { measureFloor } from "./streaming-floor.ts";
import { seconds, targetRow, times } from "./targets.ts";
import { measureTransfers, rate, type Operations } from "./transfer.ts";

const BYTES = Number(process.env.BENCH_BIG_BYTES ?? Math.round(1.1 * 2 ** 30));
const CHUNKED_BYTES = Number(process.env.BENCH_CHUNKED_BYTES ?? 2 * 2 ** 30);
const CONCURRENT_BYTES = Number(process.env.BENCH_CONCURRENT_BYTES ?? 2 ** 30);
/** A GET of a 1.1 GiB layer pushed in one chunked PATCH took 26.8–29.4 s here before 0d3eea2. */
const CHUNKED_GET_BEFORE = (29.4 * BYTES) / (1.1 * 2 ** 30);

/** Streams a file as one PATCH (chunked, like docker), then times the closing PUT. */
async function closingPut(target: Target, repo: string, file: string, digest: string): Promise<{ patch: number; put: number }> {
  const start = expectStatus(await send(target, "POST", `/v2/${repo}/blobs/uploads/`), 202, "POST");
  const location = new URL(String(start.headers.location), target.url);
  const auth = target.username ? { authorization: `Basic ${Buffer.from(`${target.username}:${target.password}`).toString("base64")}` } : {};
  const began = performance.now();
  const next = await new Promise<string>((resolve, reject) => {
    const req = request(location, { method: "PATCH", rejectUnauthorized: false, headers: { ...auth, "content-type": "application/octet-stream" } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 202 ? resolve(String(res.headers.location)) : reject(new Error(`PATCH ${res.statusCode}`))));
    });
    req.on("error", reject);
    createReadStream(file).pipe(req);
  });
  const patch = performance.now() - began;
  const finish = new URL(next, target.url);
  finish.searchParams.set("digest", digest);
  const put = expectStatus(await send(target, "PUT", finish.pathname + finish.search), 201, "PUT");
  return { patch, put: put.ms };
}

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

const work = makeTempDir("bench-big");
try {
  console.log(`building a ${(BYTES / 2 ** 30).toFixed(2)} GiB single-layer image…`);
  const big = await writeBigImage(join(work, "layout"), "v1", BYTES);
  const layerFile = join(big.layoutDir, "blobs", "sha256", big.layer.digest.slice(7));
  const { ours, theirs } = await measureTransfers(big.layoutDir, "v1", RUNS, work);
  const floor = await measureFloor(layerFile, RUNS);

  // One PATCH of the whole layer, then the closing PUT, with memory sampled throughout.
  const server = await startDevServer({ env: { WRANGLER_LOG: "warn" } }); // as the minimal Workers: no per-request log line
  const dist = await startDistribution({ auth: false, tls: true });
  const upload: Record<string, { patch: number; put: number; get: number; memory: number; rest: number; chunked: number; chunkedSeconds: number }> = {};
  const generated = new GeneratedBlob(CHUNKED_BYTES);
  try {
    for (const [label, target, pid, match] of [
      ["ours", { label: "r2-registry", url: server.url, username: server.username, password: server.password }, server.process.child.pid!, /workerd/],
      ["theirs", { label: "distribution", url: dist.url }, dist.process.child.pid!, /registry/],
    ] as const) {
      const resting = sampleMemory(pid, match);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const rest = resting.stop();
      const memory = sampleMemory(pid, match);
      const timed = await closingPut(target, "bench/put", layerFile, big.layer.digest);
      const peak = memory.stop();
      const got = await drain(new URL(`/v2/bench/put/blobs/${big.layer.digest}`, target.url), authOf(target));
      const creds = target.username ? { username: target.username, password: target.password! } : undefined;
      const chunkedMemory = sampleMemory(pid, match);
      const chunked = await pushGenerated(new RegistryClient(target.url, creds), "bench/chunked", generated, 100_000_000);
      upload[label] = { patch: timed.patch / 1000, put: timed.put, get: got.seconds, memory: peak, rest, chunked: chunkedMemory.stop(), chunkedSeconds: chunked.patchSeconds + chunked.putSeconds };
    }
  } finally {
    await server.stop();
    await dist.stop();
  }
  const a = upload.ours!;
  const b = upload.theirs!;
  table(`${(BYTES / 2 ** 30).toFixed(2)} GiB single-layer image, median of ${RUNS} runs`, ["", "r2-registry", "distribution 2.8", "ratio"], [
    ["skopeo push", rate(ours.push, BYTES), rate(theirs.push, BYTES), ratio(median(ours.push), median(theirs.push))],
    ["skopeo pull", rate(ours.pull, BYTES), rate(theirs.pull, BYTES), ratio(median(ours.pull), median(theirs.pull))],
    ["one PATCH of the layer", `${a.patch.toFixed(1)} s`, `${b.patch.toFixed(1)} s`, ratio(a.patch, b.patch)],
    ["closing PUT", `${a.put.toFixed(0)} ms`, `${b.put.toFixed(0)} ms`, ratio(a.put, b.put)],
    ["GET of the layer pushed in that PATCH", rate([a.get], BYTES), rate([b.get], BYTES), ratio(a.get, b.get)],
    ["peak RSS during the skopeo push", mib(median(ours.pushMemory)), mib(median(theirs.pushMemory)), ratio(median(ours.pushMemory), median(theirs.pushMemory))],
  ]);
  const gib = (CHUNKED_BYTES / 2 ** 30).toFixed(1);
  table(`memory while layers stream in (RSS of workerd, which also runs the local R2 simulator, vs registry)`, ["", "r2-registry", "distribution 2.8", "ratio"], [
    ["at rest (fresh server)", mib(a.rest), mib(b.rest), ratio(a.rest, b.rest)],
    [`peak, ${(BYTES / 2 ** 30).toFixed(1)} GiB in one PATCH`, mib(a.memory), mib(b.memory), ratio(a.memory, b.memory)],
    [`peak, ${gib} GiB in 100 MB PATCHes`, mib(a.chunked), mib(b.chunked), ratio(a.chunked, b.chunked)],
    [`time, ${gib} GiB in 100 MB PATCHes`, `${a.chunkedSeconds.toFixed(1)} s`, `${b.chunkedSeconds.toFixed(1)} s`, ratio(a.chunkedSeconds, b.chunkedSeconds)],
  ]);
  printFloor(ours.push, ours.pull, floor.put, floor.get);
  printOperations(ours.ops!);
  const held = await measureHeld();
  table("targets of the issue (r2-registry)", ["", "measured", "target", ""], [
    targetRow("skopeo push (ours) / minimal Worker streaming put of the same bytes", median(ours.push) / median(floor.put), 1.25, times),
    targetRow("skopeo pull (ours) / distribution's skopeo pull", median(ours.pull) / median(theirs.pull), 1.5, times),
    targetRow(`GET of a layer pushed in one chunked PATCH (before: 26.8–29.4 s for 1.1 GiB)`, a.get, CHUNKED_GET_BEFORE, seconds),
    targetRow(`${held.five}, chunked: workerd peak − rest (R2 simulator included)`, held.chunked.peak - held.chunked.rest, 80 * 2 ** 20, mib),
    targetRow(`${held.five}, known length: workerd peak − rest (R2 simulator included)`, held.known.peak - held.known.rest, 80 * 2 ** 20, mib),
    // What the registry holds beyond what the simulator and a Worker that only stores the bytes hold.
    targetRow(`${held.five}, chunked: growth beyond the minimal Worker's`, growthBeyond(held.chunked, held.minChunked), 80 * 2 ** 20, mib),
    targetRow(`${held.five}, known length: growth beyond the minimal Worker's`, growthBeyond(held.known, held.minKnown), 80 * 2 ** 20, mib),
  ]);
} finally {
  removeTempDir(work);
}

/** How much more workerd grew for r2-registry than for the minimal Worker doing the same uploads (0 when less). */
function growthBeyond(ours: HeldMemory, minimal: HeldMemory): number {
  return Math.max(0, ours.peak - ours.rest - (minimal.peak - minimal.rest));
}

/** r2-registry's skopeo push and pull beside the minimal Worker's streamed put and read of the layer. */
function printFloor(push: number[], pull: number[], put: number[], get: number[]): void {
  table(`the same ${(BYTES / 2 ** 30).toFixed(2)} GiB through the minimal Worker (one streamed bucket.put, then a GET), median of ${RUNS}`, ["", "r2-registry (skopeo)", "minimal Worker", "ratio"], [
    ["write", rate(push, BYTES), rate(put, BYTES), ratio(median(push), median(put))],
    ["read (the floor of a pull)", rate(pull, BYTES), rate(get, BYTES), ratio(median(pull), median(get))],
  ]);
}

/** The R2 operations of one skopeo push and one pull of the image. */
function printOperations(ops: { push: Operations; pull: Operations }): void {
  table("R2 operations (r2-registry on Cloudflare bills these)", ["", "requests", "class A", "class B", "free"], [
    ["one skopeo push", ops.push.requests, ops.push.classA, ops.push.classB, ops.push.free],
    ["one skopeo pull", ops.pull.requests, ops.pull.classA, ops.pull.classB, ops.pull.free],
  ]);
}

/** Five uploads at once into r2-registry and into the minimal Worker, chunked and known-length; prints them. */
async function measureHeld() {
  const [chunked, known] = [await measureConcurrentUploads(5, CONCURRENT_BYTES, false), await measureConcurrentUploads(5, CONCURRENT_BYTES, true)];
  const [minChunked, minKnown] = [await measureMinimalConcurrentUploads(5, CONCURRENT_BYTES, false), await measureMinimalConcurrentUploads(5, CONCURRENT_BYTES, true)];
  const five = `five ${(CONCURRENT_BYTES / 2 ** 30).toFixed(1)} GiB uploads at once`;
  const row = (label: string, m: HeldMemory) => [label, mib(m.rest), mib(m.peak), mib(m.peak - m.rest), seconds(m.seconds)];
  table(`${five}, each one request: workerd RSS (which includes the local R2 simulator)`, ["", "at rest", "peak", "peak − rest", "time"], [
    row("r2-registry, chunked PATCHes (no Content-Length), then PUT", chunked),
    row("r2-registry, known-length PATCHes, then PUT", known),
    row("minimal Worker, chunked PATCHes cut into 16 MiB parts", minChunked),
    row("minimal Worker, known-length streamed bucket.put", minKnown),
  ]);
  return { five, chunked, known, minChunked, minKnown };
}
