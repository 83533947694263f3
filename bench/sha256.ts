/**
 * Benchmark: SHA-256 throughput inside workerd. A tiny Worker (`bench/sha256-worker`) under
 * wrangler dev hashes 256 MiB in 64 KiB chunks with the registry's resumable WebAssembly Sha256
 * (src/crypto/sha256.ts) and, for comparison, with workerd's native `crypto.DigestStream` (which
 * cannot be resumed across requests), first on bytes made in the Worker (the hashing alone), then
 * on a request body as it arrives (what an upload PATCH does). workerd's clocks stand still while
 * code runs, so each request is timed from here: the median of three after a warm-up, with
 * `none` (the same loop, no hashing) as the floor.
 *
 * Run: pnpm bench sha256   (BENCH_SHA256_MIB to change the size, default 256)
 */
import { createHash } from "node:crypto";
import { startPlainWorker } from "./plain-worker.ts";
import { medianMs, table } from "./lib.ts";
import { targetRow } from "./targets.ts";

const MIB = Number(process.env.BENCH_SHA256_MIB ?? 256);
const CHUNK = 65536;
const engines = ["wasm", "digeststream", "none"] as const;

interface Answer {
  digest: string;
  bytes: number;
}

async function call(url: string, init?: RequestInit): Promise<Answer> {
  const res = await fetch(url, init);
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Answer;
}

/** A request body of MIB MiB, sent in 64 KiB chunks of one repeated random block. */
function body(block: Uint8Array): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent === MIB * 16) return controller.close();
      controller.enqueue(block);
      sent++;
    },
  });
}

const worker = await startPlainWorker("sha256-worker/wrangler.sha256.toml", "sha256 worker");
try {
  const base = worker.url;
  const block = new Uint8Array(CHUNK).map(() => Math.floor(Math.random() * 256));
  const expected = createHash("sha256");
  for (let i = 0; i < MIB * 16; i++) expected.update(block);
  const bodyDigest = expected.digest("hex");

  const generated: Record<string, number> = {};
  const streamed: Record<string, number> = {};
  for (const engine of engines) {
    generated[engine] = await medianMs(3, async () => {
      const started = performance.now();
      const answer = await call(`${base}/generated?engine=${engine}&mib=${MIB}`);
      if (answer.bytes !== MIB * 2 ** 20) throw new Error(`${engine}: hashed ${answer.bytes} bytes`);
      return performance.now() - started;
    });
    streamed[engine] = await medianMs(3, async () => {
      const started = performance.now();
      const answer = await call(`${base}/body?engine=${engine}`, { method: "POST", body: body(block), duplex: "half" } as RequestInit);
      if (answer.bytes !== MIB * 2 ** 20) throw new Error(`${engine}: received ${answer.bytes} bytes`);
      if (engine !== "none" && answer.digest !== bodyDigest) throw new Error(`${engine}: digest ${answer.digest}, expected ${bodyDigest}`);
      return performance.now() - started;
    });
  }
  const spanning = await medianMs(3, async () => {
    const started = performance.now();
    const answer = await call(`${base}/generated?engine=wasm&mib=${MIB}&span=100`);
    if (answer.bytes !== MIB * 2 ** 20) throw new Error(`spanning: hashed ${answer.bytes} bytes`);
    return performance.now() - started;
  });
  const rate = (ms: number) => `${(MIB / (ms / 1000)).toFixed(0)} MiB/s`;
  const mibs = (ms: number) => MIB / (ms / 1000);
  const net = (ms: number, floor: number) => (ms > floor ? rate(ms - floor) : "n/a");
  table(`SHA-256 of ${MIB} MiB in 64 KiB chunks inside workerd (wrangler dev), median of 3`, ["", "wasm Sha256", "DigestStream", "no hashing"], [
    ["made in the Worker", rate(generated.wasm!), rate(generated.digeststream!), rate(generated.none!)],
    ["  hashing alone (minus no hashing)", net(generated.wasm!, generated.none!), net(generated.digeststream!, generated.none!), ""],
    ["  state saved and restored every 100 MiB (an upload spanning requests)", rate(spanning), "", ""],
    ["  … hashing alone", net(spanning, generated.none!), "", ""],
    ["request body as it arrives (read in 1 MiB pieces, as uploads read it)", rate(streamed.wasm!), rate(streamed.digeststream!), rate(streamed.none!)],
  ]);
  const alone = (ms: number) => 1 / (1 / mibs(ms) - 1 / mibs(generated.none!));
  table("targets of the issue", ["", "measured", "target", ""], [
    targetRow("wasm SHA-256, data arriving in one request (hashing alone)", alone(generated.wasm!), 400, (n) => `${n.toFixed(0)} MiB/s`, "at least"),
    targetRow("wasm SHA-256, data spanning requests (hashing alone)", alone(spanning), 400, (n) => `${n.toFixed(0)} MiB/s`, "at least"),
  ]);
} finally {
  await worker.stop();
}
