/**
 * Launcher for CNCF distribution 2.8 (`/usr/bin/docker-registry`), the reference registry.
 *
 * Used as a stand-in target for the e2e suite (E2E_TARGET=distribution), and meant to be reused as
 * an upstream for pull-through tests and as a baseline for benchmarks. Filesystem storage in a
 * directory of your choice (or a temp dir), optional TLS with a generated self-signed certificate,
 * optional htpasswd (bcrypt) Basic auth, optional pull-through proxy mode.
 *
 *   const reg = await startDistribution({ auth: true, tls: true });
 *   // reg.host = "127.0.0.1:PORT", reg.url = "https://127.0.0.1:PORT", reg.username/password
 *   await reg.stop();
 *
 * The config file is written as JSON, which YAML parsers (distribution's included) accept.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { httpFetch } from "./http.ts";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir, run } from "./processes.ts";
import { generateSelfSignedCert } from "./tls.ts";

export const DISTRIBUTION_BIN = process.env.E2E_DISTRIBUTION_BIN ?? "/usr/bin/docker-registry";

export interface DistributionOptions {
  /** Port on 127.0.0.1; default: a free one. */
  port?: number;
  /** htpasswd Basic auth (default true). */
  auth?: boolean;
  /** Credentials when `auth` is on; default: random ones. */
  username?: string;
  password?: string;
  /** Serve HTTPS with a generated self-signed certificate (default true). */
  tls?: boolean;
  /** Where blobs and manifests are stored; default: a temp dir removed by stop(). A dir you pass is kept. */
  storageDir?: string;
  /** Allow DELETE of manifests and blobs (default true). */
  deleteEnabled?: boolean;
  /** Pull-through cache of another registry (distribution "proxy" mode). */
  proxy?: { remoteUrl: string; username?: string; password?: string };
  /** Log level: error, warn, info, debug (default warn). */
  logLevel?: "error" | "warn" | "info" | "debug";
  /** Access log lines on stdout (default false). */
  accessLog?: boolean;
  /** How long to wait for the registry to answer (default 30 s). */
  startTimeoutMs?: number;
}

export interface RunningDistribution {
  /** "127.0.0.1:PORT", as used in image references. */
  host: string;
  port: number;
  /** "https://127.0.0.1:PORT" or "http://…". */
  url: string;
  tls: boolean;
  /** Undefined when auth is off. */
  username: string | undefined;
  password: string | undefined;
  storageDir: string;
  configFile: string;
  process: BackgroundProcess;
  logs(): string;
  stop(): Promise<void>;
}

/** A bcrypt htpasswd line `user:$2y$…`, made with apache2-utils' htpasswd. */
export async function htpasswdLine(username: string, password: string): Promise<string> {
  if (!existsSync("/usr/bin/htpasswd")) {
    throw new Error("htpasswd not found: install apache2-utils (apt-get install -y apache2-utils)");
  }
  // -i reads the password from stdin, so it never shows in the process list.
  const { stdout } = await run("htpasswd", ["-niB", "-C", "5", username], { input: `${password}\n`, timeoutMs: 30_000 });
  const line = stdout.trim();
  if (!line.startsWith(`${username}:$2`)) throw new Error(`unexpected htpasswd output: ${line}`);
  return line;
}

export async function startDistribution(opts: DistributionOptions = {}): Promise<RunningDistribution> {
  const auth = opts.auth ?? true;
  const tls = opts.tls ?? true;
  const workDir = makeTempDir("e2e-dist");
  const storageDir = opts.storageDir ?? join(workDir, "storage");
  mkdirSync(storageDir, { recursive: true });

  let proc: BackgroundProcess | undefined;
  try {
    const port = opts.port ?? (await freePort());
    const username = auth ? (opts.username ?? `user-${randomBytes(4).toString("hex")}`) : undefined;
    const password = auth ? (opts.password ?? randomBytes(12).toString("hex")) : undefined;

    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: opts.logLevel ?? "warn", accesslog: { disabled: !opts.accessLog }, formatter: "text" },
      storage: {
        filesystem: { rootdirectory: storageDir },
        delete: { enabled: opts.deleteEnabled ?? true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: `127.0.0.1:${port}`,
        secret: randomBytes(16).toString("hex"),
        headers: { "X-Content-Type-Options": ["nosniff"] },
      },
    };
    if (tls) {
      const { certFile, keyFile } = await generateSelfSignedCert(workDir);
      (config.http as Record<string, unknown>).tls = { certificate: certFile, key: keyFile };
    }
    if (auth) {
      const htpasswdFile = join(workDir, "htpasswd");
      writeFileSync(htpasswdFile, `${await htpasswdLine(username!, password!)}\n`);
      config.auth = { htpasswd: { realm: "e2e-registry", path: htpasswdFile } };
    }
    if (opts.proxy) {
      config.proxy = {
        remoteurl: opts.proxy.remoteUrl,
        ...(opts.proxy.username ? { username: opts.proxy.username, password: opts.proxy.password ?? "" } : {}),
      };
    }
    const configFile = join(workDir, "config.yml");
    writeFileSync(configFile, JSON.stringify(config, null, 2));

    proc = new BackgroundProcess(DISTRIBUTION_BIN, ["serve", configFile], {
      label: "distribution",
      // distribution reads REGISTRY_* variables as config overrides: keep the environment clean.
      env: Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith("REGISTRY_")).map((k) => [k, undefined])),
    });
    const url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    const p = proc;
    await p.waitUntil(
      `${url}/v2/ to answer`,
      async () => {
        try {
          const res = await httpFetch({ url: `${url}/v2/`, timeoutMs: 2000 });
          return res.status === 200 || res.status === 401;
        } catch {
          return false;
        }
      },
      opts.startTimeoutMs ?? 30_000,
    );
    return {
      host: `127.0.0.1:${port}`,
      port,
      url,
      tls,
      username,
      password,
      storageDir,
      configFile,
      process: p,
      logs: () => p.logs(),
      stop: () =>
        cleanupAll([
          () => p.stop(),
          () => removeTempDir(workDir),
        ]),
    };
  } catch (err) {
    await cleanupAll([() => proc?.stop(), () => removeTempDir(workDir)]).catch(() => {});
    throw err;
  }
}
