/**
 * The real registry clients, each sandboxed so nothing leaks between runs or from the host:
 *  - skopeo with a private (empty) auth file and docker config dir,
 *  - podman with private --root/--runroot/--tmpdir, vfs storage, cgroupfs, no events, private authfile,
 *  - a private dockerd (vfs, no networking setup) on its own unix socket, and the docker CLI with a
 *    private DOCKER_CONFIG.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  BackgroundProcess,
  cleanupAll,
  makeTempDir,
  registerExitCleanup,
  removeTempDir,
  run,
  type RunOptions,
  type RunResult,
} from "./processes.ts";

/** Environment that points every containers/image and docker lookup of credentials at `dir`. */
function privateAuthEnv(dir: string): Record<string, string> {
  mkdirSync(join(dir, "docker-config"), { recursive: true });
  // podman refuses to pull with an --authfile/REGISTRY_AUTH_FILE that does not exist.
  writeFileSync(join(dir, "auth.json"), JSON.stringify({ auths: {} }));
  return {
    REGISTRY_AUTH_FILE: join(dir, "auth.json"),
    DOCKER_CONFIG: join(dir, "docker-config"),
  };
}

// ---------------------------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------------------------

export class Skopeo {
  readonly dir: string;
  readonly env: Record<string, string>;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
    this.env = privateAuthEnv(dir);
  }

  run(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run("skopeo", args, { timeoutMs: 180_000, ...opts, env: { ...this.env, ...opts.env } });
  }
}

// ---------------------------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------------------------

export class Podman {
  readonly dir: string;
  readonly authFile: string;
  readonly env: Record<string, string>;
  private readonly globals: string[];

  constructor(dir: string) {
    this.dir = dir;
    for (const sub of ["root", "runroot", "tmp"]) mkdirSync(join(dir, sub), { recursive: true });
    this.env = privateAuthEnv(dir);
    this.authFile = this.env.REGISTRY_AUTH_FILE!;
    this.globals = [
      "--root", join(dir, "root"),
      "--runroot", join(dir, "runroot"),
      "--tmpdir", join(dir, "tmp"),
      "--storage-driver", "vfs",
      "--cgroup-manager", "cgroupfs",
      "--events-backend", "none",
    ];
  }

  run(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return run("podman", [...this.globals, ...args], {
      timeoutMs: 180_000,
      ...opts,
      env: { TMPDIR: join(this.dir, "tmp"), ...this.env, ...opts.env },
    });
  }
}

// ---------------------------------------------------------------------------------------------
// docker
// ---------------------------------------------------------------------------------------------

/** The docker CLI to use: E2E_DOCKER_CLI, else `docker` on PATH. */
export const DOCKER_CLI = process.env.E2E_DOCKER_CLI ?? "docker";

export interface Dockerd {
  /** "unix:///tmp/…/s" */
  host: string;
  /** Private DOCKER_CONFIG dir of the CLI. */
  configDir: string;
  /** Runs the docker CLI against this daemon. */
  docker(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Starts a private dockerd (its own data-root, exec-root, socket and pid file; vfs storage; no
 * bridge/iptables) and waits until `docker info` answers.
 */
export async function startDockerd(opts: { startTimeoutMs?: number } = {}): Promise<Dockerd> {
  // Short path on purpose: the unix socket path must stay under 108 bytes.
  const dir = makeTempDir("e2d");
  const configDir = join(dir, "cfg");
  mkdirSync(configDir, { recursive: true });
  const host = `unix://${join(dir, "s")}`;
  const proc = new BackgroundProcess(
    "dockerd",
    [
      "--data-root", join(dir, "data"),
      "--exec-root", join(dir, "x"),
      "-H", host,
      "--pidfile", join(dir, "pid"),
      "--storage-driver", "vfs",
      "--iptables=false",
      "--ip6tables=false",
      "--bridge=none",
      "--ip-forward=false",
      "--ip-masq=false",
      "--userland-proxy=false",
      "--exec-opt", "native.cgroupdriver=cgroupfs",
    ],
    { label: "dockerd" },
  );
  const env = { DOCKER_CONFIG: configDir, DOCKER_HOST: host, DOCKER_CONTEXT: undefined, DOCKER_CLI_HINTS: "false" };
  const docker = (args: readonly string[], o: RunOptions = {}) =>
    run(DOCKER_CLI, ["-H", host, ...args], { timeoutMs: 180_000, ...o, env: { ...env, ...o.env } });
  // dockerd starts containerd in a session of its own (setsid), outside our process group: it stops
  // it on SIGTERM, but if dockerd dies first containerd must be killed through its pid file.
  const killContainerd = () => {
    try {
      const pid = Number(readFileSync(join(dir, "x", "containerd", "containerd.pid"), "utf8").trim());
      if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) process.kill(pid, "SIGKILL");
    } catch {
      /* not started, or already gone */
    }
  };
  const unregister = registerExitCleanup(killContainerd);
  const stop = () =>
    cleanupAll([() => proc.stop(20_000), killContainerd, unregister, () => removeTempDir(dir)]);
  try {
    await proc.waitUntil(
      "`docker info` to answer",
      async () => (await docker(["info", "--format", "{{.ServerVersion}}"], { allowFailure: true, timeoutMs: 10_000 })).code === 0,
      opts.startTimeoutMs ?? 60_000,
      250,
    );
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { host, configDir, docker, logs: () => proc.logs(), stop };
}
