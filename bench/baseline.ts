/**
 * Benchmark: what the local stack costs by itself. A minimal Worker (`bench/baseline-worker`: the
 * same 16 MiB multipart parts, no hashing, no sessions, no checks) and r2-registry each take the
 * same generated blob as 100 MB PATCHes under wrangler dev, while the workerd processes' memory is
 * sampled. Whatever the minimal Worker shows too (speed, memory growing with the bytes stored)
 * belongs to wrangler dev and its R2 simulator, not to r2-registry.
 *
 * Run: pnpm bench baseline   (BENCH_BASELINE_BYTES to change the size, default 2 GiB)
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { GeneratedBlob } from "../test/e2e/lib/generated-blob.ts";
import { headerValue, httpFetch, RegistryClient, type HttpResponse } from "../test/e2e/lib/http.ts";
import { BackgroundProcess, freePort, makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { mib, sampleMemory } from "./memory.ts";
import { ratio, table } from "./lib.ts";

const here = dirname(fileURLToPath(import.meta.url));
const BYTES = Number(process.env.BENCH_BASELINE_BYTES ?? 2 * 2 ** 30);
const CHUNK = 100_000_000;

type Send = (method: string, path: string, headers: Record<string, string>, body?: Uint8Array) => Promise<HttpResponse>;

interface Trace {
  seconds: number;
  /** Peak RSS while each quarter of the bytes went in. */
  quarters: number[];
}

/** POST, then PATCHes of CHUNK bytes to wherever each answer's Location points. */
async function stream(send: Send, start: string, pid: number, blob: GeneratedBlob): Promise<Trace> {
  const opened = await send("POST", start, {});
  if (opened.status !== 202) throw new Error(`POST ${start}: ${opened.status} ${opened.body.toString("utf8")}`);
  let location = headerValue(opened, "location")!;
  const quarters: number[] = [];
  let memory = sampleMemory(pid, /workerd/, 100);
  const began = performance.now();
  for (let offset = 0; offset < blob.size; offset += CHUNK) {
    const body = blob.bytes(offset, CHUNK);
    const url = new URL(location, "http://x");
    const res = await send("PATCH", url.pathname + url.search, { "content-type": "application/octet-stream", "content-range": `${offset}-${offset + body.length - 1}` }, body);
    if (res.status !== 202) throw new Error(`PATCH at ${offset}: ${res.status} ${res.body.toString("utf8")}`);
    location = headerValue(res, "location")!;
    const end = offset + body.length;
    if (end >= ((quarters.length + 1) * blob.size) / 4 || end === blob.size) {
      quarters.push(memory.stop());
      memory = sampleMemory(pid, /workerd/, 100);
    }
  }
  memory.stop();
  return { seconds: (performance.now() - began) / 1000, quarters };
}

async function baseline(blob: GeneratedBlob): Promise<Trace> {
  const port = await freePort();
  const state = makeTempDir("bench-baseline");
  const wrangler = join(here, "..", "node_modules", ".bin", "wrangler");
  const proc = new BackgroundProcess(wrangler, ["dev", "--config", join(here, "baseline-worker", "wrangler.baseline.toml"), "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state], {
    label: "baseline worker",
    env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  });
  try {
    await proc.waitUntil("Ready on", () => proc.logs().includes("Ready on"), 120_000, 200);
    const send: Send = (method, path, headers, body) => httpFetch({ method, url: `http://127.0.0.1:${port}${path}`, headers, body, timeoutMs: 300_000 });
    return await stream(send, "/upload", proc.child.pid!, blob);
  } finally {
    await proc.stop();
    removeTempDir(state);
  }
}

async function ours(blob: GeneratedBlob): Promise<Trace> {
  const server = await startDevServer();
  try {
    const client = new RegistryClient(server.url, { username: server.username, password: server.password });
    return await stream((method, path, headers, body) => client.request(method, path, headers, body), "/v2/bench/baseline/blobs/uploads/", server.process.child.pid!, blob);
  } finally {
    await server.stop();
  }
}

const blob = new GeneratedBlob(BYTES);
const minimal = await baseline(blob);
const registry = await ours(blob);
const gib = (BYTES / 2 ** 30).toFixed(1);
const rate = (t: Trace) => `${t.seconds.toFixed(1)} s (${(BYTES / 1e6 / t.seconds).toFixed(0)} MB/s)`;
table(`${gib} GiB in 100 MB PATCHes under wrangler dev: a minimal Worker vs r2-registry`, ["", "minimal Worker", "r2-registry", "ratio"], [
  ["time", rate(minimal), rate(registry), ratio(registry.seconds, minimal.seconds)],
  ...minimal.quarters.map((m, i) => [`peak workerd RSS, quarter ${i + 1}`, mib(m), mib(registry.quarters[i] ?? 0), ratio(registry.quarters[i] ?? 0, m)]),
]);
