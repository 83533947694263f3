/**
 * Push and pull of an OCI layout with skopeo against fresh instances of both registries, several
 * runs (a fresh server each run, so no blob is already there and no client cache helps), with the
 * peak memory of the server processes during the push and, for r2-registry, the R2 operations one
 * push and one pull cost (`LOG_R2_OPERATIONS`), counted in a push and pull of their own.
 */
import { join } from "node:path";
import { Skopeo } from "../test/e2e/lib/clients.ts";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { startDistribution } from "../test/e2e/lib/distribution.ts";
import { removeTempDir } from "../test/e2e/lib/processes.ts";
import { sampleMemory } from "./memory.ts";
import { median } from "./lib.ts";

export interface Operations {
  classA: number;
  classB: number;
  free: number;
  requests: number;
}

/** The most R2 operations one request of a type made, over the requests seen of that type. */
export interface MaxOperations {
  classA: number;
  classB: number;
  /** Class A + class B + free, of the request that made the most. */
  total: number;
  requests: number;
}

/** The route shape of a request, as the router has it: `PATCH /v2/<name>/blobs/uploads/<id>`. */
export function requestType(method: string, path: string): string {
  const shapes: [RegExp, string][] = [
    [/^\/v2\/?$/, "/v2/"],
    [/^\/v2\/_catalog$/, "/v2/_catalog"],
    [/^\/v2\/_gc$/, "/v2/_gc"],
    [/^\/v2\/.+\/tags\/list$/, "/v2/<name>/tags/list"],
    [/^\/v2\/.+\/manifests\/[a-z0-9]+(?:[+._-][a-z0-9]+)*:[^/]+$/, "/v2/<name>/manifests/<digest>"],
    [/^\/v2\/.+\/manifests\/[^/]+$/, "/v2/<name>/manifests/<tag>"],
    [/^\/v2\/.+\/blobs\/uploads\/?$/, "/v2/<name>/blobs/uploads/"],
    [/^\/v2\/.+\/blobs\/uploads\/[^/]+$/, "/v2/<name>/blobs/uploads/<id>"],
    [/^\/v2\/.+\/referrers\/[^/]+$/, "/v2/<name>/referrers/<digest>"],
    [/^\/v2\/.+\/blobs\/[^/]+$/, "/v2/<name>/blobs/<digest>"],
    [/^\/v2\/.+\/gc$/, "/v2/<name>/gc"],
  ];
  return `${method} ${shapes.find(([shape]) => shape.test(path))?.[1] ?? path}`;
}

/**
 * Adds the `R2 operations for …` lines a dev server logged after offset `from` to `into`: per
 * request type, the most class A, class B and in all one request made.
 *
 * @example
 * const max = new Map<string, MaxOperations>();
 * maxOperations(server.logs(), 0, max);
 */
export function maxOperations(logs: string, from: number, into: Map<string, MaxOperations>): Map<string, MaxOperations> {
  for (const m of logs.slice(from).matchAll(/R2 operations for (\S+) (\S+): class A (\d+), class B (\d+), free (\d+)/g)) {
    const type = requestType(m[1]!, m[2]!);
    const [a, b, free] = [Number(m[3]), Number(m[4]), Number(m[5])];
    const seen = into.get(type) ?? { classA: 0, classB: 0, total: 0, requests: 0 };
    into.set(type, { classA: Math.max(seen.classA, a), classB: Math.max(seen.classB, b), total: Math.max(seen.total, a + b + free), requests: seen.requests + 1 });
  }
  return into;
}

export interface Transfers {
  /** Seconds of each run. */
  push: number[];
  pull: number[];
  /** Peak RSS (bytes) of the server's processes during each push. */
  pushMemory: number[];
  /** R2 operations of one push and one pull, counted in a run of their own (r2-registry only). */
  ops?: { push: Operations; pull: Operations };
  /** The most R2 operations one request of each type made in that run (r2-registry only). */
  maxOps?: Map<string, MaxOperations>;
}

/** Sums the `R2 operations for …` lines a dev server logged after offset `from`. */
function operations(logs: string, from: number): Operations {
  const total: Operations = { classA: 0, classB: 0, free: 0, requests: 0 };
  for (const m of logs.slice(from).matchAll(/R2 operations for \S+ \S+: class A (\d+), class B (\d+), free (\d+)/g)) {
    total.classA += Number(m[1]);
    total.classB += Number(m[2]);
    total.free += Number(m[3]);
    total.requests++;
  }
  return total;
}

type Server = Awaited<ReturnType<typeof startDevServer>> | Awaited<ReturnType<typeof startDistribution>>;

/**
 * One skopeo push of `oci:<layoutDir>:<tag>` to `server` and one pull back: seconds each, the
 * peak RSS of the server's processes (`match`) during the push, and the server's log as it stood
 * after each.
 */
async function pushAndPull(server: Server, match: RegExp, layoutDir: string, tag: string, dir: string): Promise<{ push: number; pull: number; memory: number; pushLogs: string; pullLogs: string }> {
  const skopeo = new Skopeo(join(dir, "skopeo"));
  const creds = server.username ? ["--dest-creds", `${server.username}:${server.password}`] : ["--dest-no-creds"];
  const pulled = join(dir, "pulled");
  // Requests are logged as they end: give the last lines a moment.
  const settled = () => new Promise((resolve) => setTimeout(resolve, 500));
  try {
    const memory = sampleMemory(server.process.child.pid!, match);
    let t = performance.now();
    let push: number;
    let peak: number;
    try {
      await skopeo.run(["copy", "--preserve-digests", "--dest-tls-verify=false", ...creds, `oci:${layoutDir}:${tag}`, `docker://${server.host}/bench/image:${tag}`], { timeoutMs: 1_800_000 });
      push = (performance.now() - t) / 1000;
    } finally {
      peak = memory.stop();
    }
    await settled();
    const pushLogs = server.logs();
    t = performance.now();
    const srcCreds = creds.map((c) => c.replace("--dest-", "--src-"));
    await skopeo.run(["copy", "--preserve-digests", "--src-tls-verify=false", ...srcCreds, `docker://${server.host}/bench/image:${tag}`, `oci:${pulled}:${tag}`], { timeoutMs: 1_800_000 });
    const pull = (performance.now() - t) / 1000;
    await settled();
    return { push, pull, memory: peak, pushLogs, pullLogs: server.logs() };
  } finally {
    removeTempDir(pulled);
  }
}

/**
 * Measures `runs` pushes and pulls of `oci:<layoutDir>:<tag>` into each registry, a fresh server
 * each run. r2-registry's timed runs go without `LOG_R2_OPERATIONS` (off by default) and with
 * wrangler at `WRANGLER_LOG=warn`, like the minimal Workers of the floors: counting R2 operations
 * and logging a line per request cost about 2 ms per request there (`GET /v2/` 4.4–7.2 against
 * 7.7–8.7 ms in alternating runs), which is the local log pipe's, not the registry's. Its R2
 * operations are counted in one more push and pull of their own, untimed, on a server with
 * `LOG_R2_OPERATIONS=true`.
 *
 * @example
 * const { ours, theirs } = await measureTransfers(layout, "v1", 3, workDir);
 */
export async function measureTransfers(layoutDir: string, tag: string, runs: number, work: string): Promise<{ ours: Transfers; theirs: Transfers }> {
  const ours: Transfers = { push: [], pull: [], pushMemory: [], maxOps: new Map() };
  const theirs: Transfers = { push: [], pull: [], pushMemory: [] };
  const counting = await startDevServer({ env: { LOG_R2_OPERATIONS: "true", WRANGLER_LOG: "log" } });
  try {
    const { pushLogs, pullLogs } = await pushAndPull(counting, /workerd/, layoutDir, tag, join(work, "counted"));
    // The process keeps the end of a long log only: then the pull's lines cannot be told apart.
    if (!pullLogs.startsWith(pushLogs)) throw new Error("the counting server's log was cut: its R2 operations cannot be split into push and pull");
    ours.ops = { push: operations(pushLogs, 0), pull: operations(pullLogs, pushLogs.length) };
    maxOperations(pullLogs, 0, ours.maxOps!);
  } finally {
    await counting.stop();
  }
  for (let run = 0; run < runs; run++) {
    for (const side of ["ours", "theirs"] as const) {
      // LOG_R2_OPERATIONS=false even when the environment sets it: a --var, it wins over wrangler.toml's vars too.
      const server = side === "ours" ? await startDevServer({ env: { WRANGLER_LOG: "warn", LOG_R2_OPERATIONS: "false" } }) : await startDistribution({ auth: false, tls: true });
      const result = side === "ours" ? ours : theirs;
      try {
        const timed = await pushAndPull(server, side === "ours" ? /workerd/ : /registry/, layoutDir, tag, join(work, `${side}-${run}`));
        result.push.push(timed.push);
        result.pull.push(timed.pull);
        result.pushMemory.push(timed.memory);
      } finally {
        await server.stop();
      }
    }
  }
  return { ours, theirs };
}

/** "12.3 s (91 MB/s)": the median of the runs. */
export function rate(seconds: number[], bytes: number): string {
  const s = median(seconds);
  return `${s.toFixed(1)} s (${(bytes / 1e6 / s).toFixed(0)} MB/s)`;
}
