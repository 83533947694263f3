/**
 * Benchmark: requests per second and latency percentiles of `HEAD` manifest, `GET` manifest and
 * `HEAD` blob under concurrency, measured with wrk (Debian's `wrk`), for r2-registry (`pnpm dev`:
 * workerd + local R2) and distribution 2.8 (filesystem) on this machine.
 *
 * Run: pnpm bench requests   (BENCH_SECONDS, BENCH_CONNECTIONS to change the load)
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Skopeo } from "../test/e2e/lib/clients.ts";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { buildFixtures, skopeoPush } from "../test/e2e/lib/fixtures.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { ratio, table } from "./lib.ts";

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
      const a = wrk(`${ours.url}${path}`, method, { ...accept, ...auth }, work);
      const b = wrk(`${dist.url}${path}`, method, accept, work);
      rows.push([what, show(a), show(b), ratio(b.rps, a.rps)]);
    }
    table(`requests under load: wrk, ${CONNECTIONS} connections, ${SECONDS} s each (ratio: their rps / ours)`, ["", "r2-registry", "distribution 2.8", "ratio"], rows);
  } finally {
    await ours.stop();
    await dist.stop();
  }
} finally {
  removeTempDir(work);
}
