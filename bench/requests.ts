/**
 * Benchmark: requests per second and latency percentiles of the small requests of a pull (`GET
 * /v2/`, `GET` manifest by tag, `HEAD` manifest, `HEAD` blob) under concurrency, for r2-registry
 * (`pnpm dev`: workerd + local R2), a minimal Worker under the same wrangler dev
 * (`bench/minimal-worker`: a string compare of the Basic header and one R2 call, i.e. what the
 * stack costs by itself) and distribution 2.8 (filesystem) on this machine, one after the other.
 * `GET`s are measured with wrk (Debian's `wrk`); `HEAD`s with a keep-alive load loop in Node (wrk
 * 4.1 waits for a body after a `HEAD` answer that has a Content-Length, so it cannot measure HEAD).
 *
 * Run: pnpm bench requests   (BENCH_SECONDS, BENCH_CONNECTIONS to change the load; BENCH_ROUNDS
 * to measure everything that many times and print medians)
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
import { httpFetch, type HttpResponse } from "../test/e2e/lib/http.ts";
import { groupCpuSeconds, median, ratio, startMinimalWorker, table } from "./lib.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 1));

interface Load {
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  errors: number;
  /** Server CPU time per request (its whole process group: wrangler, workerd, …), ms. */
  cpu: number;
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
async function load(url: string, method: string, headers: Record<string, string>, server: number): Promise<Load> {
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
  errors = 0;
  const cpuBefore = groupCpuSeconds(server);
  const deadline = performance.now() + SECONDS * 1000;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) await one();
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  const cpu = ((groupCpuSeconds(server) - cpuBefore) * 1000) / latencies.length;
  agent.destroy();
  const sorted = [...latencies].sort((a, b) => a - b);
  return { rps: latencies.length / elapsed, p50: median(sorted), p90: percentile(sorted, 90), p99: percentile(sorted, 99), errors, cpu };
}

/** Runs wrk against one URL and reads its summary. */
function wrk(url: string, method: string, headers: Record<string, string>, work: string, server: number): Load {
  const script = join(work, `${method}.lua`);
  writeFileSync(script, `wrk.method = "${method}"\n`);
  const args = ["-t2", `-c${CONNECTIONS}`, `-d${SECONDS}s`, "--latency", "-s", script];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  const cpuBefore = groupCpuSeconds(server);
  const run = spawnSync("wrk", [...args, url], { encoding: "utf8" });
  const cpuSeconds = groupCpuSeconds(server) - cpuBefore;
  if (run.status !== 0) throw new Error(`wrk failed: ${run.stderr || run.stdout}`);
  const out = run.stdout;
  const percentile = (p: string) => millis(new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m").exec(out)?.[1] ?? "");
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
    p50: percentile("50"),
    p90: percentile("90"),
    p99: percentile("99"),
    errors: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?(\d+)/.exec(out)?.[1] ?? 0),
    cpu: (cpuSeconds * 1000) / Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN),
  };
}

/** The median of each figure over several measurements of the same thing. */
function medianLoad(loads: Load[]): Load {
  const of = (key: keyof Load) => median(loads.map((l) => l[key]));
  return { rps: of("rps"), p50: of("p50"), p90: of("p90"), p99: of("p99"), errors: of("errors"), cpu: of("cpu") };
}

function show(l: Load): string {
  return `${l.rps.toFixed(0)}/s  p50 ${l.p50.toFixed(1)}  p99 ${l.p99.toFixed(1)} ms  CPU ${l.cpu.toFixed(2)} ms${l.errors ? `  (${l.errors} errors)` : ""}`;
}

function expect(res: HttpResponse, status: number, what: string): HttpResponse {
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${res.body.toString("utf8").slice(0, 300)}`);
  return res;
}

const basic = (username: string, password: string) => ({ Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}` });

const work = makeTempDir("bench-requests");
try {
  const fx = buildFixtures(work);
  const ours = await startDevServer({ env: { WRANGLER_LOG: "warn" } }); // as the minimal Workers: no per-request log line
  const minimal = await startMinimalWorker();
  const dist = await startDistribution({ auth: false, tls: true });
  try {
    const skopeo = new Skopeo(join(work, "skopeo"));
    await skopeoPush(skopeo, ours, fx.layoutDir, fx.tags.layered, "bench/app");
    await skopeo.run(["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds", `oci:${fx.layoutDir}:${fx.tags.layered}`, `docker://${dist.host}/bench/app:${fx.tags.layered}`]);
    const accept = { Accept: "application/vnd.oci.image.manifest.v1+json" };
    const targets = [
      { label: "r2-registry", url: ours.url, headers: { ...accept, ...basic(ours.username, ours.password) }, pid: ours.process.pid! },
      { label: "minimal Worker", url: minimal.url, headers: { ...accept, ...basic(minimal.username, minimal.password) }, pid: minimal.process.pid! },
      { label: "distribution 2.8", url: dist.url, headers: accept, pid: dist.process.pid! },
    ];
    const manifestPath = `/v2/bench/app/manifests/${fx.tags.layered}`;
    const blobPath = `/v2/bench/app/blobs/${fx.layered.config.digest}`;
    // The minimal Worker gets the same manifest and blob, copied from r2-registry.
    for (const path of [manifestPath, blobPath]) {
      const got = expect(await httpFetch({ url: `${ours.url}${path}`, headers: targets[0]!.headers }), 200, `GET ${path}`);
      const headers = { ...targets[1]!.headers, "Content-Type": String(got.headers["content-type"]), "Docker-Content-Digest": String(got.headers["docker-content-digest"] ?? "") };
      expect(await httpFetch({ method: "PUT", url: `${minimal.url}${path}`, headers, body: got.body }), 201, `PUT ${path} to the minimal Worker`);
    }
    const cases = [
      { what: "GET /v2/ (wrk)", method: "GET", path: "/v2/", wrk: true },
      { what: "GET manifest by tag (wrk)", method: "GET", path: manifestPath, wrk: true },
      { what: "HEAD manifest", method: "HEAD", path: manifestPath, wrk: false },
      { what: "HEAD blob", method: "HEAD", path: blobPath, wrk: false },
    ] as const;
    const results = cases.map(() => targets.map((): Load[] => []));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, { method, path, wrk: useWrk }] of cases.entries()) {
        for (const [j, target] of targets.entries()) {
          const url = `${target.url}${path}`;
          results[i]![j]!.push(useWrk ? wrk(url, method, target.headers, work, target.pid) : await load(url, method, target.headers, target.pid));
        }
      }
    }
    const rows = cases.map(({ what }, i) => {
      const [a, m, d] = results[i]!.map(medianLoad) as [Load, Load, Load];
      return [what, show(a), show(m), show(d), ratio(a.rps, m.rps), ratio(a.rps, d.rps)];
    });
    const rounds = ROUNDS > 1 ? `, medians of ${ROUNDS} rounds` : "";
    table(
      `requests under load: ${CONNECTIONS} keep-alive connections, ${SECONDS} s each, one after the other${rounds}; CPU: the server's CPU time per request ` +
        `(all its processes); ratios: our requests per second ÷ theirs`,
      ["", "r2-registry", "minimal Worker", "distribution 2.8", "÷ minimal", "÷ distribution"],
      rows,
    );
  } finally {
    await ours.stop();
    await minimal.stop();
    await dist.stop();
  }
} finally {
  removeTempDir(work);
}
