/**
 * The floor of the byte path under `pnpm dev`'s setup: the minimal Worker of
 * `bench/baseline-worker` served as `pnpm dev` serves r2-registry (scripts/serve-worker.mjs, HTTPS
 * self-signed, a local bucket in a temp dir), taking a file as one `bucket.put` of a Content-Length
 * body (`PUT /object`, no registry logic) and streaming it back (`GET /object`). r2-registry's
 * push and pull of the same bytes are measured against these times.
 */
import { createReadStream, statSync } from "node:fs";
import { drain, streamUpload } from "./http-stream.ts";
import { startBenchWorker, type BenchWorker } from "./plain-worker.ts";

export interface Floor {
  /** Seconds of each streamed put, and of each read back. */
  put: number[];
  get: number[];
}

/** Starts the baseline Worker the way scripts/dev.mjs serves r2-registry (HTTPS); answers its URL. */
export function startBaselineWorker(): Promise<BenchWorker> {
  return startBenchWorker("baseline-worker/wrangler.baseline.toml", "baseline Worker", { protocol: "https" });
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
