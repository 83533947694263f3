/**
 * Benchmark: a 1.1 GiB single-layer image pushed and pulled with skopeo, the latency of the
 * closing PUT of a 1.1 GiB upload, and the registry processes' peak memory, for r2-registry
 * (`pnpm dev`: workerd + local R2) and distribution 2.8 (filesystem) on this machine.
 *
 * Run: pnpm bench big-layer   (BENCH_BIG_BYTES to change the size)
 */
import { createReadStream } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { Skopeo } from "../test/e2e/lib/clients.ts";
import { writeBigImage } from "../test/e2e/lib/big-image.ts";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { mib, sampleMemory } from "./memory.ts";
import { expectStatus, ratio, send, table, type Target } from "./lib.ts";

const BYTES = Number(process.env.BENCH_BIG_BYTES ?? Math.round(1.1 * 2 ** 30));

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

const work = makeTempDir("bench-big");
try {
  console.log(`building a ${(BYTES / 2 ** 30).toFixed(2)} GiB single-layer image…`);
  const big = await writeBigImage(join(work, "layout"), "v1", BYTES);
  const layerFile = join(big.layoutDir, "blobs", "sha256", big.layer.digest.slice(7));
  const ours = await startDevServer();
  const dist = await startDistribution({ auth: false, tls: true });
  const skopeo = new Skopeo(join(work, "skopeo"));
  const rows: string[][] = [];
  const results: Record<string, { push: number; pull: number; patch: number; put: number; memory: number[] }> = {};
  try {
    for (const [label, target, pid, match] of [
      ["r2-registry", { label: "r2-registry", url: ours.url, username: ours.username, password: ours.password }, ours.process.child.pid!, /workerd/],
      ["distribution 2.8", { label: "distribution", url: dist.url }, dist.process.child.pid!, /registry/],
    ] as const) {
      const host = new URL(target.url).host;
      const creds = "username" in target && target.username ? ["--dest-creds", `${target.username}:${target.password}`] : ["--dest-no-creds"];
      let memory = sampleMemory(pid, match);
      let t = performance.now();
      await skopeo.run(["copy", "--preserve-digests", "--dest-tls-verify=false", ...creds, `oci:${big.layoutDir}:v1`, `docker://${host}/bench/big:v1`], { timeoutMs: 1_800_000 });
      const push = (performance.now() - t) / 1000;
      const pushMemory = memory.stop();
      memory = sampleMemory(pid, match);
      t = performance.now();
      const srcCreds = creds.map((c) => c.replace("--dest-", "--src-"));
      await skopeo.run(["copy", "--preserve-digests", "--src-tls-verify=false", ...srcCreds, `docker://${host}/bench/big:v1`, `oci:${join(work, `pulled-${pid}`)}:v1`], { timeoutMs: 1_800_000 });
      const pull = (performance.now() - t) / 1000;
      const pullMemory = memory.stop();
      removeTempDir(join(work, `pulled-${pid}`));
      memory = sampleMemory(pid, match);
      const upload = await closingPut(target, "bench/put", layerFile, big.layer.digest);
      const patchMemory = memory.stop();
      results[label] = { push, pull, patch: upload.patch / 1000, put: upload.put, memory: [pushMemory, pullMemory, patchMemory] };
    }
    const a = results["r2-registry"]!;
    const b = results["distribution 2.8"]!;
    const mbps = (s: number) => `${(BYTES / 1e6 / s).toFixed(0)} MB/s`;
    rows.push(["skopeo push", `${a.push.toFixed(1)} s (${mbps(a.push)})`, `${b.push.toFixed(1)} s (${mbps(b.push)})`, ratio(a.push, b.push)]);
    rows.push(["skopeo pull", `${a.pull.toFixed(1)} s (${mbps(a.pull)})`, `${b.pull.toFixed(1)} s (${mbps(b.pull)})`, ratio(a.pull, b.pull)]);
    rows.push(["one PATCH of the layer", `${a.patch.toFixed(1)} s`, `${b.patch.toFixed(1)} s`, ratio(a.patch, b.patch)]);
    rows.push(["closing PUT", `${a.put.toFixed(0)} ms`, `${b.put.toFixed(0)} ms`, ratio(a.put, b.put)]);
    for (const [i, phase] of ["skopeo push", "skopeo pull", "PATCH + PUT"].entries()) {
      rows.push([`peak RSS during ${phase}`, mib(a.memory[i]!), mib(b.memory[i]!), ratio(a.memory[i]!, b.memory[i]!)]);
    }
    table(`${(BYTES / 2 ** 30).toFixed(2)} GiB single-layer image`, ["", "r2-registry", "distribution 2.8", "ratio"], rows);
  } finally {
    await ours.stop();
    await dist.stop();
  }
} finally {
  removeTempDir(work);
}
