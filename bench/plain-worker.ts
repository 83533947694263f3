/**
 * Starts one of the bench's own Workers (`bench/<dir>/<config>`) the way `pnpm dev` serves
 * r2-registry (`scripts/serve-worker.mjs`: bundled by wrangler, served by miniflare in workerd, a
 * local bucket in a fresh temp dir), so that the two differ only in the Worker's own code.
 *
 * @example
 * const worker = await startPlainWorker("sha256-worker/wrangler.sha256.toml", "sha256 worker");
 * try { await fetch(`${worker.url}/generated`); } finally { await worker.stop(); }
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";

const here = dirname(fileURLToPath(import.meta.url));

export interface BenchWorker {
  url: string;
  /** The server's process (its group holds workerd too). */
  process: BackgroundProcess;
  pid: number;
  stop(): Promise<void>;
}

/** Plain HTTP unless `protocol` says https (self-signed, as `pnpm dev`); `vars` become the Worker's vars. */
export async function startBenchWorker(
  config: string,
  label: string,
  { protocol = "http", vars = {} }: { protocol?: "http" | "https"; vars?: Record<string, string> } = {},
): Promise<BenchWorker> {
  const port = await freePort();
  const state = makeTempDir("bench-worker");
  const args = [join(here, "..", "scripts", "serve-worker.mjs"), "--config", join(here, config), "--port", String(port), "--protocol", protocol, "--persist-to", state];
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);
  const proc = new BackgroundProcess(process.execPath, args, { label, cwd: join(here, "..") });
  const url = `${protocol}://127.0.0.1:${port}`;
  const stop = () => cleanupAll([() => proc.stop(), () => removeTempDir(state)]);
  try {
    await proc.waitUntil(`"ready at ${url}"`, () => proc.logs().includes(`ready at ${url}`), 120_000, 200);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return { url, process: proc, pid: proc.child.pid!, stop };
}

/** A bench Worker on plain HTTP, as `pnpm bench baseline` and `pnpm bench sha256` need it. */
export function startPlainWorker(config: string, label: string): Promise<BenchWorker> {
  return startBenchWorker(config, label);
}
