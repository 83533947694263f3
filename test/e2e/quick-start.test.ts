/**
 * README's quick start, `./scripts/start`, from a fresh clone on a machine like the ones this
 * project is developed on: PATH=/usr/bin:/bin, whose Node (Debian's, 20) is too old for wrangler
 * and which has no pnpm. The script must put Node >= 22 and pnpm from its per-user cache first on
 * PATH, install the dependencies and start the dev registry, which must answer and print its
 * credentials.
 *
 * The clone is of HEAD of the repository the test runs in: commit what you want tested.
 *
 * The cache is R2_REGISTRY_NODE_DIR when set (.ci/run's toolchain exports it when it uses the
 * cache, so CI does not download Node twice), else the script's default,
 * ~/.cache/r2-registry-node24; when it holds no usable Node and pnpm, the script installs them
 * there with npm (a download of ~60 MB) and this test covers that too.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./lib/dev-server.ts";
import { describeResponse, httpFetch } from "./lib/http.ts";
import { BackgroundProcess, cleanupAll, freePort, makeTempDir, removeTempDir, run, sleep } from "./lib/processes.ts";

/** A PATH like a fresh Debian machine's: the system Node (older than 22) and no pnpm. */
const OLD_PATH = "/usr/bin:/bin";
const NODE_DIR = process.env.R2_REGISTRY_NODE_DIR || join(homedir(), ".cache", "r2-registry-node24");

/**
 * Only what a person's login shell on this machine would have: HOME (the pnpm store lives under
 * it), locale and temp dir, the machine's network settings (proxy, CA certificates: npm needs
 * them to download Node), the old PATH and the cache dir. Everything else of this process's
 * environment (npm_*, NODE_OPTIONS, CI, USERNAME, the Worker's settings...) is dropped.
 */
function freshEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  const keep = /^(HOME|USER|LOGNAME|SHELL|LANG|LC_\w+|TZ|TMPDIR|XDG_\w+|\w*_PROXY|NODE_EXTRA_CA_CERTS|SSL_CERT_(FILE|DIR))$/i;
  for (const [key, value] of Object.entries(process.env)) env[key] = keep.test(key) ? value : undefined;
  return { ...env, PATH: OLD_PATH, R2_REGISTRY_NODE_DIR: NODE_DIR, ...extra };
}

/** Major version of `<command> --version` on OLD_PATH, 0 when it is missing. */
async function majorOnOldPath(command: string): Promise<number> {
  const r = await run("bash", ["-c", `${command} --version`], { env: freshEnv({}), allowFailure: true, timeoutMs: 30_000 });
  const m = /^v?(\d+)\./.exec(r.stdout.trim());
  return r.code === 0 && m ? Number(m[1]) : 0;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The processes of session `sid` (Linux /proc) with their executables. BackgroundProcess starts
 * the script in a session of its own, and pnpm runs `pnpm dev`'s command in a process group of
 * its own inside it: the session, not the group, holds everything the script started.
 */
function sessionProcesses(sid: number): Array<{ pid: number; exe: string }> {
  const found: Array<{ pid: number; exe: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // After the command name (which may hold spaces): state, ppid, pgrp, session.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[3]) === sid) found.push({ pid: Number(entry), exe: readlinkSync(`/proc/${entry}/exe`) });
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

/** Stops the script (pnpm passes the SIGTERM on to its command's group), then anything left. */
async function stopSession(proc: BackgroundProcess | undefined): Promise<void> {
  if (!proc?.pid) return;
  const sid = proc.pid;
  await proc.stop();
  for (let i = 0; i < 50 && sessionProcesses(sid).length > 0; i++) await sleep(100);
  for (const { pid } of sessionProcesses(sid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone meanwhile */
    }
  }
}

let clone: string | undefined;
let start: BackgroundProcess | undefined;
afterAll(() => cleanupAll([() => stopSession(start), () => removeTempDir(clone)]));

describe("README quick start: ./scripts/start", () => {
  it("from a fresh clone with an old Node on PATH: provisions Node and pnpm, installs, starts the registry", async () => {
    const oldNode = await majorOnOldPath("node");
    const oldPnpm = await majorOnOldPath("pnpm");
    // Where the machine has Node >= 22 and pnpm >= 11 on /usr/bin the script rightly uses them.
    const provisioned = !(oldNode >= 22 && oldPnpm >= 11);

    clone = makeTempDir("quick-start");
    const head = (await run("git", ["-C", REPO_ROOT, "rev-parse", "HEAD"])).stdout.trim();
    await run("git", ["clone", "--quiet", "--no-checkout", REPO_ROOT, clone]);
    await run("git", ["-C", clone, "checkout", "--quiet", "--detach", head]);

    const port = await freePort();
    const started = Date.now();
    start = new BackgroundProcess("./scripts/start", [], { cwd: clone, label: "./scripts/start", env: freshEnv({ PORT: String(port) }) });
    const ready = `r2-registry is ready at https://127.0.0.1:${port}`;
    // A first run on a machine whose cache is empty downloads Node and pnpm: give it time.
    await start.waitUntil(`"${ready}"`, () => start!.logs().includes(ready), 540_000, 250);
    const readyAfterMs = Date.now() - started;
    const logs = start.logs();

    expect(logs).toContain("credentials: hello / world");
    expect(logs).toContain(`docker login 127.0.0.1:${port} -u hello -p world`);
    const url = `https://127.0.0.1:${port}/v2/`;
    const anonymous = await httpFetch({ url });
    expect(anonymous.status, describeResponse("GET", url, anonymous)).toBe(401);
    expect(anonymous.headers["www-authenticate"], describeResponse("GET", url, anonymous)).toMatch(/^Basic /);
    const authorized = await httpFetch({ url, headers: { Authorization: `Basic ${Buffer.from("hello:world").toString("base64")}` } });
    expect(authorized.status, describeResponse("GET", url, authorized)).toBe(200);

    // The registry runs on the Node the script chose, not on PATH's: every node process the
    // script started (scripts/dev.mjs, wrangler and its child) is the cache's.
    const nodes = sessionProcesses(start.pid!)
      .map((p) => p.exe)
      .filter((exe) => /\/node$/.test(exe));
    expect(nodes.length, start.describe("no node process in the session")).toBeGreaterThan(0);
    if (provisioned) {
      expect(logs).toMatch(new RegExp(`toolchain: node v\\d+\\.\\d+\\.\\d+, pnpm \\d+\\.\\d+\\.\\d+ \\(from ${escapeRegExp(NODE_DIR)}/bin\\)`));
      const cached = realpathSync(join(NODE_DIR, "bin", "node"));
      expect(new Set(nodes), `PATH's node is ${oldNode || "missing"}; the script must use ${cached}`).toEqual(new Set([cached]));
      const cachedMajor = Number((await run(cached, ["-p", "process.versions.node.split('.')[0]"])).stdout.trim());
      expect(cachedMajor).toBeGreaterThanOrEqual(22);
    } else {
      expect(logs).toContain("(from PATH)");
    }

    // SIGTERM to the script's process group (Ctrl-C does the same) stops everything it started.
    const sid = start.pid!;
    await start.stop();
    for (let i = 0; i < 50 && sessionProcesses(sid).length > 0; i++) await sleep(100);
    expect(sessionProcesses(sid), "processes left 5 s after the script was stopped").toEqual([]);
    console.log(`quick start: ready ${(readyAfterMs / 1000).toFixed(1)} s after ./scripts/start (node on ${OLD_PATH}: ${oldNode || "missing"}, pnpm: ${oldPnpm || "missing"})`);
  }, 600_000);
});
