/**
 * Benchmark: a 1.1 GiB single-layer image pushed and pulled with skopeo (median of BENCH_RUNS,
 * default 3, a fresh server each run), the latency of the closing PUT of a 1.1 GiB upload, and the
 * registry processes' peak memory, for r2-registry (`pnpm dev`: workerd + local R2) and
 * distribution 2.8 (filesystem) on this machine.
 *
 * Then the memory at rest, and the peak memory while a generated 2 GiB blob goes in as 100 MB
 * PATCHes (as the push tool sends it): flat memory means the peaks do not grow with the size.
 *
 * Run: pnpm bench big-layer   (BENCH_BIG_BYTES, BENCH_CHUNKED_BYTES to change the sizes)
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
import { measureTransfers, rate } from "./transfer.ts";

const BYTES = Number(process.env.BENCH_BIG_BYTES ?? Math.round(1.1 * 2 ** 30));
const CHUNKED_BYTES = Number(process.env.BENCH_CHUNKED_BYTES ?? 2 * 2 ** 30);

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

  // One PATCH of the whole layer, then the closing PUT, with memory sampled throughout.
  const server = await startDevServer();
  const dist = await startDistribution({ auth: false, tls: true });
  const upload: Record<string, { patch: number; put: number; memory: number; rest: number; chunked: number; chunkedSeconds: number }> = {};
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
      const creds = target.username ? { username: target.username, password: target.password! } : undefined;
      const chunkedMemory = sampleMemory(pid, match);
      const chunked = await pushGenerated(new RegistryClient(target.url, creds), "bench/chunked", generated, 100_000_000);
      upload[label] = { patch: timed.patch / 1000, put: timed.put, memory: peak, rest, chunked: chunkedMemory.stop(), chunkedSeconds: chunked.patchSeconds + chunked.putSeconds };
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
    ["peak RSS during the skopeo push", mib(median(ours.pushMemory)), mib(median(theirs.pushMemory)), ratio(median(ours.pushMemory), median(theirs.pushMemory))],
  ]);
  const gib = (CHUNKED_BYTES / 2 ** 30).toFixed(1);
  table(`memory while layers stream in (RSS of workerd, which also runs the local R2 simulator, vs registry)`, ["", "r2-registry", "distribution 2.8", "ratio"], [
    ["at rest (fresh server)", mib(a.rest), mib(b.rest), ratio(a.rest, b.rest)],
    [`peak, ${(BYTES / 2 ** 30).toFixed(1)} GiB in one PATCH`, mib(a.memory), mib(b.memory), ratio(a.memory, b.memory)],
    [`peak, ${gib} GiB in 100 MB PATCHes`, mib(a.chunked), mib(b.chunked), ratio(a.chunked, b.chunked)],
    [`time, ${gib} GiB in 100 MB PATCHes`, `${a.chunkedSeconds.toFixed(1)} s`, `${b.chunkedSeconds.toFixed(1)} s`, ratio(a.chunkedSeconds, b.chunkedSeconds)],
  ]);
} finally {
  removeTempDir(work);
}
