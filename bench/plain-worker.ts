/**
 * Starts one of the bench's own Workers (`bench/<dir>/<config>`) under `wrangler dev` on plain
 * HTTP with a fresh local state, the way `pnpm bench baseline` and `pnpm bench sha256` need it.
 *
 * @example
 * const worker = await startPlainWorker("sha256-worker/wrangler.sha256.toml", "sha256 worker");
 * try { await fetch(`${worker.url}/generated`); } finally { await worker.stop(); }
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackgroundProcess, freePort, makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";

const here = dirname(fileURLToPath(import.meta.url));

export interface PlainWorker {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startPlainWorker(config: string, label: string): Promise<PlainWorker> {
  const port = await freePort();
  const state = makeTempDir("bench-worker");
  const wrangler = join(here, "..", "node_modules", ".bin", "wrangler");
  const proc = new BackgroundProcess(wrangler, ["dev", "--config", join(here, config), "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state], {
    label,
    env: { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" },
  });
  const stop = async () => {
    await proc.stop();
    removeTempDir(state);
  };
  try {
    await proc.waitUntil("Ready on", () => proc.logs().includes("Ready on"), 120_000, 200);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, pid: proc.child.pid!, stop };
}
