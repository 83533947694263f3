/**
 * Starts the project's own dev server (`node scripts/dev.mjs`, i.e. `pnpm dev`: wrangler dev with
 * a local R2 bucket, HTTPS with a self-signed certificate) on a free port, with a temp state dir
 * and unique credentials, and waits for its "ready" line.
 */
import { randomBytes } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir } from "./processes.ts";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

export interface DevServerOptions {
  port?: number;
  /** Where the local R2 bucket lives; default: a temp dir removed by stop(). A dir you pass is kept. */
  stateDir?: string;
  username?: string;
  password?: string;
  /** Extra environment for the server. */
  env?: Record<string, string | undefined>;
  /** Flags for `pnpm dev` (e.g. `["--var", "ANONYMOUS_PULL:true"]`). */
  args?: string[];
  startTimeoutMs?: number;
}

export interface RunningDevServer {
  host: string;
  port: number;
  url: string;
  username: string;
  password: string;
  stateDir: string;
  process: BackgroundProcess;
  logs(): string;
  stop(): Promise<void>;
}

export async function startDevServer(opts: DevServerOptions = {}): Promise<RunningDevServer> {
  // A port found free can be taken by another process before wrangler binds it (CI saw
  // "Address already in use" once): start again on another port, a few times at most.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (error) {
      const taken = error instanceof Error && error.message.includes("Address already in use");
      if (!taken || opts.port !== undefined || attempt >= 3) throw error;
    }
  }
}

async function startOnce(opts: DevServerOptions): Promise<RunningDevServer> {
  const workDir = opts.stateDir ? undefined : makeTempDir("e2e-dev");
  const stateDir = opts.stateDir ?? join(workDir!, "state");
  const port = opts.port ?? (await freePort());
  const username = opts.username ?? `user-${randomBytes(4).toString("hex")}`;
  const password = opts.password ?? randomBytes(12).toString("hex");
  const proc = new BackgroundProcess(process.execPath, [join(REPO_ROOT, "scripts", "dev.mjs"), ...(opts.args ?? [])], {
    label: "dev server",
    cwd: REPO_ROOT,
    env: {
      PORT: String(port),
      HOST: "127.0.0.1",
      REGISTRY_STATE_DIR: stateDir,
      USERNAME: username,
      PASSWORD: password,
      DEV_PROTOCOL: undefined,
      // Cloudflare's R2 limits, which the local simulator does not enforce (see limited.ts).
      R2_LIMITS: "enforce",
      ...opts.env,
    },
  });
  const ready = `r2-registry is ready at https://127.0.0.1:${port}`;
  try {
    await proc.waitUntil(`"${ready}"`, () => proc.logs().includes(ready), opts.startTimeoutMs ?? 120_000, 200);
  } catch (err) {
    await cleanupAll([() => proc.stop(), () => removeTempDir(workDir)]).catch(() => {});
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `https://127.0.0.1:${port}`,
    username,
    password,
    stateDir,
    process: proc,
    logs: () => proc.logs(),
    stop: () => cleanupAll([() => proc.stop(), () => removeTempDir(workDir)]),
  };
}
