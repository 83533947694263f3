/**
 * Small helpers shared by the benchmarks: a keep-alive HTTP client that ignores self-signed
 * certificates, timing, table printing, and the minimal Worker they measure the stack with.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { join } from "node:path";
import { REPO_ROOT } from "../test/e2e/lib/dev-server.ts";
import { httpFetch } from "../test/e2e/lib/http.ts";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";

const httpsAgent = new Agent({ keepAlive: true, rejectUnauthorized: false, maxSockets: 64 });
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 });

export interface Target {
  /** Shown in tables. */
  label: string;
  /** e.g. https://127.0.0.1:5000 */
  url: string;
  username?: string;
  password?: string;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  ms: number;
}

/** Sends one request to a registry and times it (until the whole body is read). */
export function send(target: Target, method: string, path: string, headers: Record<string, string> = {}, body?: string | Uint8Array): Promise<Reply> {
  const url = new URL(path, target.url);
  const auth = target.username ? { authorization: `Basic ${Buffer.from(`${target.username}:${target.password}`).toString("base64")}` } : {};
  const https = url.protocol === "https:";
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = (https ? request : httpRequest)(
      url,
      {
        method,
        agent: https ? httpsAgent : httpAgent,
        headers: { ...auth, ...headers, ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${url} timed out`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Throws unless the reply has the expected status. */
export function expectStatus(reply: Reply, status: number, what: string): Reply {
  if (reply.status !== status) throw new Error(`${what}: expected ${status}, got ${reply.status}: ${reply.body.toString("utf8").slice(0, 500)}`);
  return reply;
}

/** Median of a list of numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Runs `fn` `runs` times (after one warm-up) and returns the median milliseconds. */
export async function medianMs(runs: number, fn: () => Promise<number>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await fn());
  return median(times);
}

export function sha256(data: string | Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Prints an aligned table. */
export function table(title: string, header: string[], rows: (string | number)[][]): void {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  console.log(`\n${title}`);
  for (const [i, row] of cells.entries()) {
    console.log(`  ${row.map((c, j) => c.padEnd(widths[j]!)).join("  ")}`);
    if (i === 0) console.log(`  ${widths.map((w) => "-".repeat(w)).join("  ")}`);
  }
}

/** "12.3 ms" */
export function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

/** "×1.8" ratio of ours to theirs (below 1 is faster). */
export function ratio(ours: number, theirs: number): string {
  return theirs > 0 ? `×${(ours / theirs).toFixed(2)}` : "n/a";
}

export interface RunningMinimalWorker {
  url: string;
  username: string;
  password: string;
  process: BackgroundProcess;
  stop(): Promise<void>;
}

/**
 * Starts `bench/minimal-worker` under this project's wrangler the way `pnpm dev` serves
 * r2-registry (wrangler dev, HTTPS with a self-signed certificate, a local bucket in a temp dir,
 * only warnings logged: wrangler printing a line per request would slow it down), so that the
 * two differ only in the Worker's own code.
 */
export async function startMinimalWorker(): Promise<RunningMinimalWorker> {
  const port = await freePort();
  const inspectorPort = await freePort();
  const state = makeTempDir("bench-minimal");
  const username = "bench";
  const password = randomBytes(12).toString("hex");
  const config = join(REPO_ROOT, "bench", "minimal-worker", "wrangler.minimal.toml");
  const wrangler = join(REPO_ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const proc = new BackgroundProcess(
    process.execPath,
    [
      wrangler, "dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port), "--local-protocol", "https",
      "--persist-to", state, "--inspector-port", String(inspectorPort), "--show-interactive-dev-session=false",
      "--var", `USERNAME:${username}`, "--var", `PASSWORD:${password}`,
    ],
    { label: "minimal Worker", cwd: REPO_ROOT, env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", WRANGLER_LOG: "warn" } },
  );
  const url = `https://127.0.0.1:${port}`;
  const stop = () => cleanupAll([() => proc.stop(), () => removeTempDir(state)]);
  try {
    await proc.waitUntil("its first answer", async () => {
      try {
        return (await httpFetch({ url: `${url}/`, timeoutMs: 2000 })).status === 401;
      } catch {
        return false;
      }
    }, 120_000, 250);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return { url, username, password, process: proc, stop };
}

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/**
 * CPU seconds (user + system) used so far by the live processes of a process group, e.g. a
 * server started as a BackgroundProcess (its pid is the group's id): wrangler, workerd and all.
 * Sampled before and after a load, it says what each request cost the server, a figure that
 * other work on the machine disturbs far less than requests per second.
 */
export function groupCpuSeconds(group: number): number {
  let ticks = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the parenthesised command name: state ppid pgrp … utime (14th) stime (15th).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === group) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}
