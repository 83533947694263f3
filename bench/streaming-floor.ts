/**
 * The floor of the byte path under `pnpm dev`'s setup: the minimal Worker of
 * `bench/baseline-worker` served by wrangler dev over HTTPS (self-signed, a local bucket in a temp
 * dir, warnings-only logging), taking a file as one `bucket.put` of a Content-Length body
 * (`PUT /object`, no registry logic) and streaming it back (`GET /object`). r2-registry's push
 * and pull of the same bytes are measured against these times.
 */
import { createReadStream, statSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../test/e2e/lib/dev-server.ts";
import { httpFetch } from "../test/e2e/lib/http.ts";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { drain, streamUpload } from "./http-stream.ts";

export interface Floor {
  /** Seconds of each streamed put, and of each read back. */
  put: number[];
  get: number[];
}

/** Starts the baseline Worker the way scripts/dev.mjs starts r2-registry; answers its URL. */
export async function startBaselineWorker(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const state = makeTempDir("bench-floor");
  const config = join(REPO_ROOT, "bench", "baseline-worker", "wrangler.baseline.toml");
  const wrangler = join(REPO_ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
  const proc = new BackgroundProcess(
    process.execPath,
    [
      wrangler, "dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port), "--local-protocol", "https",
      "--persist-to", state, "--inspector-port", String(await freePort()), "--show-interactive-dev-session=false",
    ],
    { label: "baseline Worker", cwd: REPO_ROOT, env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false", WRANGLER_LOG: "warn" } },
  );
  const url = `https://127.0.0.1:${port}`;
  const stop = () => cleanupAll([() => proc.stop(), () => removeTempDir(state)]);
  const answers = async () => (await httpFetch({ url: `${url}/`, timeoutMs: 2000 }).catch(() => undefined))?.status === 404;
  try {
    await proc.waitUntil("its first answer", answers, 120_000, 250);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return { url, pid: proc.child.pid!, stop };
}

/** `runs` times, on a fresh Worker each: one streamed PUT of `file`, then one GET of it. */
export async function measureFloor(file: string, runs: number): Promise<Floor> {
  const size = statSync(file).size;
  const floor: Floor = { put: [], get: [] };
  for (let run = 0; run < runs; run++) {
    const worker = await startBaselineWorker();
    try {
      const headers = { "content-type": "application/octet-stream", "content-length": String(size) };
      const put = await streamUpload("PUT", `${worker.url}/object`, headers, createReadStream(file, { highWaterMark: 2 ** 20 }));
      if (put.status !== 201) throw new Error(`baseline PUT /object: ${put.status} ${put.body}`);
      floor.put.push(put.seconds);
      const got = await drain(`${worker.url}/object`);
      if (got.bytes !== size) throw new Error(`baseline GET /object: ${got.bytes} bytes of ${size}`);
      floor.get.push(got.seconds);
    } finally {
      await worker.stop();
    }
  }
  return floor;
}
