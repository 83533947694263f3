/**
 * Benchmark: requests per second and latency percentiles of `HEAD` manifest, `GET` manifest and
 * `HEAD` blob under concurrency, for r2-registry (`pnpm dev`: workerd + local R2) and distribution
 * 2.8 (filesystem) on this machine. Measured with a keep-alive load loop in Node (wrk 4.1 waits for
 * a body after a `HEAD` answer that has a Content-Length, so it cannot measure HEAD), and `GET`
 * manifest also with wrk (Debian's `wrk`) as a second opinion.
 *
 * Run: pnpm bench requests   (BENCH_SECONDS, BENCH_CONNECTIONS to change the load)
 */
import { spawnSync } from "node:child_process";
import { Agent, request } from "node:https";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Skopeo } from "../test/e2e/lib/clients.ts";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { buildFixtures, skopeoPush } from "../test/e2e/lib/fixtures.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { median, ratio, table } from "./lib.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

interface Load {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  errors: number;
}

function millis(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!m) return Number.NaN;
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : Number.NaN;
}

/** CONNECTIONS loops sending the same request over kept-alive connections for SECONDS. */
async function load(url: string, method: string, headers: Record<string, string>): Promise<Load> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS, rejectUnauthorized: false });
  const latencies: number[] = [];
  let errors = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = request(url, { method, headers, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if ((res.statusCode ?? 0) >= 400) errors++;
          latencies.push(performance.now() - started);
          resolve();
        });
      });
      req.on("error", () => {
        errors++;
        resolve();
      });
      req.end();
    });
  // Warm the connections up first.
  await Promise.all(Array.from({ length: CONNECTIONS }, one));
  latencies.length = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) await one();
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  agent.destroy();
  const sorted = [...latencies].sort((a, b) => a - b);
  return { rps: latencies.length / elapsed, p50: median(sorted), p90: percentile(sorted, 90), p99: percentile(sorted, 99), errors };
}

/** Runs wrk against one URL and reads its summary. */
function wrk(url: string, method: string, headers: Record<string, string>, work: string): Load {
  const script = join(work, `${method}.lua`);
  writeFileSync(script, `wrk.method = "${method}"\n`);
  const args = ["-t2", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  const run = spawnSync("wrk", [...args, url], { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`wrk failed: ${run.stderr || run.stdout}`);
  const out = run.stdout;
  const percentile = (p: string) => millis(new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "");
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
    p50: percentile("50"),
    p90: percentile("90"),
    p99: percentile("99"),
    errors: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0),
  };
}

const work = makeTempDir("bench-requests");
try {
  const fx = buildFixtures(work);
  const ours = await startDevServer();
  const dist = await startDistribution({ auth: false, tls: true });
  try {
    const skopeo = new Skopeo(join(work, "skopeo"));
    await skopeoPush(skopeo, ours, fx.layoutDir, fx.tags.layered, "bench/app");
    await skopeo.run(["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds", `oci:${fx.layoutDir}:${fx.tags.layered}`, `docker://${dist.host}/bench/app:${fx.tags.layered}`]);
    const accept = { Accept: "application/vnd.oci.image.manifest.v1+json" };
    const auth = { Authorization: `Basic ${Buffer.from(`${ours.username}:${ours.password}`).toString("base64")}` };
    const rows: string[][] = [];
    const show = (l: Load) => `${l.rps.toFixed(0)}/s  p50 ${l.p50.toFixed(1)}  p90 ${l.p90.toFixed(1)}  p99 ${l.p99.toFixed(1)} ms${l.errors ? `  (${l.errors} errors)` : ""}`;
    for (const [what, method, path] of [
      ["HEAD manifest", "HEAD", `/v2/bench/app/manifests/${fx.tags.layered}`],
      ["GET manifest", "GET", `/v2/bench/app/manifests/${fx.tags.layered}`],
      ["HEAD blob", "HEAD", `/v2/bench/app/blobs/${fx.layered.config.digest}`],
    ] as const) {
      const a = await load(`${ours.url}${path}`, method, { ...accept, ...auth });
      const b = await load(`${dist.url}${path}`, method, accept);
      rows.push([what, show(a), show(b), ratio(a.rps, b.rps)]);
    }
    const manifestPath = `/v2/bench/app/manifests/${fx.tags.layered}`;
    const a = wrk(`${ours.url}${manifestPath}`, "GET", { ...accept, ...auth }, work);
    const b = wrk(`${dist.url}${manifestPath}`, "GET", accept, work);
    rows.push(["GET manifest (wrk)", show(a), show(b), ratio(a.rps, b.rps)]);
    table(`requests under load: ${CONNECTIONS} keep-alive connections, ${SECONDS} s each (ratio: our requests per second ÷ theirs)`, ["", "r2-registry", "distribution 2.8", "ratio"], rows);
  } finally {
    await ours.stop();
    await dist.stop();
  }
} finally {
  removeTempDir(work);
}
