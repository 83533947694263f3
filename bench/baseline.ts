/**
 * Benchmark: what the local stack costs by itself. A minimal Worker (`bench/baseline-worker`: the
 * same 16 MiB multipart parts, no hashing, no sessions, no checks) and r2-registry each take the
 * same generated blob as 80 MiB PATCHes (five whole parts each, so neither keeps a remainder)
 * under wrangler dev, finish it, and serve it back, while the workerd processes' memory is
 * sampled. Whatever the minimal Worker shows too belongs to wrangler dev and its R2 simulator,
 * not to r2-registry.
 *
 * Run: pnpm bench baseline   (BENCH_BASELINE_BYTES to change the size, default 2 GiB)
 */
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { startDevServer } from "../test/e2e/lib/dev-server.ts";
import { GeneratedBlob } from "../test/e2e/lib/generated-blob.ts";
import { headerValue, httpFetch, RegistryClient, type HttpResponse } from "../test/e2e/lib/http.ts";
import { mib, sampleMemory } from "./memory.ts";
import { ratio, table } from "./lib.ts";
import { startPlainWorker } from "./plain-worker.ts";

const BYTES = Number(process.env.BENCH_BASELINE_BYTES ?? 2 * 2 ** 30);
const CHUNK = 5 * 16 * 2 ** 20;

type Send = (method: string, path: string, headers: Record<string, string>, body?: Uint8Array | string) => Promise<HttpResponse>;

interface Side {
  label: string;
  send: Send;
  /** Where uploads start. */
  start: string;
  /** Closes the upload: the answers of every PATCH and the blob's digest give what it needs. */
  finish(location: string, patches: HttpResponse[], digest: string): Promise<void>;
  /** Where the finished blob is read. */
  read(digest: string): string;
  /** Absolute URL base and headers for the streamed read. */
  base: string;
  headers: Record<string, string>;
  pid: number;
}

interface Trace {
  seconds: number;
  /** Peak RSS while each quarter of the bytes went in. */
  quarters: number[];
  finishMs: number;
  readSeconds: number;
  readPeak: number;
}

/** GETs a URL and throws the body away as it arrives; answers the bytes read. */
function drain(url: string, headers: Record<string, string>): Promise<number> {
  const request = url.startsWith("https:") ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, rejectUnauthorized: false }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => (bytes += chunk.length));
      res.on("end", () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function measure(side: Side, blob: GeneratedBlob): Promise<Trace> {
  const opened = await side.send("POST", side.start, {});
  if (opened.status !== 202) throw new Error(`${side.label}: POST ${opened.status} ${opened.body.toString("utf8")}`);
  let location = headerValue(opened, "location")!;
  const hash = createHash("sha256");
  const patches: HttpResponse[] = [];
  const quarters: number[] = [];
  let memory = sampleMemory(side.pid, /workerd/, 100);
  const began = performance.now();
  for (let offset = 0; offset < blob.size; offset += CHUNK) {
    const body = blob.bytes(offset, CHUNK);
    hash.update(body);
    const url = new URL(location, "http://x");
    const res = await side.send("PATCH", url.pathname + url.search, { "content-type": "application/octet-stream", "content-range": `${offset}-${offset + body.length - 1}` }, body);
    if (res.status !== 202) throw new Error(`${side.label}: PATCH at ${offset}: ${res.status} ${res.body.toString("utf8")}`);
    patches.push(res);
    location = headerValue(res, "location")!;
    const end = offset + body.length;
    if (end >= ((quarters.length + 1) * blob.size) / 4) {
      quarters.push(memory.stop());
      memory = sampleMemory(side.pid, /workerd/, 100);
    }
  }
  memory.stop();
  const seconds = (performance.now() - began) / 1000;
  const digest = `sha256:${hash.digest("hex")}`;
  const closing = performance.now();
  await side.finish(location, patches, digest);
  const finishMs = performance.now() - closing;

  const reading = sampleMemory(side.pid, /workerd/, 100);
  const readStart = performance.now();
  const read = await drain(`${side.base}${side.read(digest)}`, side.headers);
  const readSeconds = (performance.now() - readStart) / 1000;
  const readPeak = reading.stop();
  if (read !== blob.size) throw new Error(`${side.label}: read ${read} bytes of ${blob.size}`);
  return { seconds, quarters, finishMs, readSeconds, readPeak };
}

async function minimalWorker(blob: GeneratedBlob): Promise<Trace> {
  const worker = await startPlainWorker("baseline-worker/wrangler.baseline.toml", "baseline worker");
  try {
    const base = worker.url;
    const send: Send = (method, path, headers, body) => httpFetch({ method, url: `${base}${path}`, headers, body, timeoutMs: 300_000 });
    return await measure(
      {
        label: "minimal Worker",
        send,
        start: "/upload",
        async finish(location, patches) {
          const parts = patches.flatMap((p) => JSON.parse(p.body.toString("utf8")) as unknown[]);
          const res = await send("PUT", location, { "content-type": "application/json" }, JSON.stringify(parts));
          if (res.status !== 201) throw new Error(`minimal Worker: PUT ${res.status} ${res.body.toString("utf8")}`);
        },
        read: () => "/blob",
        base,
        headers: {},
        pid: worker.pid,
      },
      blob,
    );
  } finally {
    await worker.stop();
  }
}

async function registry(blob: GeneratedBlob): Promise<Trace> {
  const server = await startDevServer({ env: { WRANGLER_LOG: "warn" } }); // as the minimal Workers: no per-request log line
  try {
    const client = new RegistryClient(server.url, { username: server.username, password: server.password });
    const send: Send = (method, path, headers, body) => client.request(method, path, headers, body);
    return await measure(
      {
        label: "r2-registry",
        send,
        start: "/v2/bench/baseline/blobs/uploads/",
        async finish(location, _patches, digest) {
          const url = new URL(location, server.url);
          url.searchParams.set("digest", digest);
          const res = await send("PUT", url.pathname + url.search, {});
          if (res.status !== 201) throw new Error(`r2-registry: PUT ${res.status} ${res.body.toString("utf8")}`);
        },
        read: (digest) => `/v2/bench/baseline/blobs/${digest}`,
        base: server.url,
        headers: { authorization: `Basic ${Buffer.from(`${server.username}:${server.password}`).toString("base64")}` },
        pid: server.process.child.pid!,
      },
      blob,
    );
  } finally {
    await server.stop();
  }
}

const blob = new GeneratedBlob(BYTES);
const minimal = await minimalWorker(blob);
const ours = await registry(blob);
const gib = (BYTES / 2 ** 30).toFixed(1);
const rate = (seconds: number) => `${seconds.toFixed(1)} s (${(BYTES / 1e6 / seconds).toFixed(0)} MB/s)`;
table(`${gib} GiB in 80 MiB PATCHes, finished, read back, under wrangler dev: a minimal Worker vs r2-registry`, ["", "minimal Worker", "r2-registry", "ratio"], [
  ["PATCHes", rate(minimal.seconds), rate(ours.seconds), ratio(ours.seconds, minimal.seconds)],
  ...minimal.quarters.map((m, i) => [`  peak workerd RSS, quarter ${i + 1}`, mib(m), mib(ours.quarters[i] ?? 0), ratio(ours.quarters[i] ?? 0, m)]),
  ["closing PUT", `${minimal.finishMs.toFixed(0)} ms`, `${ours.finishMs.toFixed(0)} ms`, ratio(ours.finishMs, minimal.finishMs)],
  ["GET of the blob", rate(minimal.readSeconds), rate(ours.readSeconds), ratio(ours.readSeconds, minimal.readSeconds)],
  ["  peak workerd RSS", mib(minimal.readPeak), mib(ours.readPeak), ratio(ours.readPeak, minimal.readPeak)],
]);
