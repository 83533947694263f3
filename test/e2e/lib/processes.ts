/**
 * Process helpers for the end-to-end suite: run a command with a timeout and a readable error,
 * start long-running background processes in their own process group (so that stopping one also
 * stops everything it spawned), find free ports, make and remove temporary directories.
 *
 * Every background process and temp dir is tracked; if the test worker exits without cleaning up
 * (crash, Ctrl-C), the process groups are still killed from an `exit` hook.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RunOptions {
  /** Extra environment variables (merged over process.env unless `cleanEnv` is set). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to the command's standard input, then stdin is closed. */
  input?: string | Uint8Array;
  /** Kill the command (its whole process group) after this many ms. Default 120 s. */
  timeoutMs?: number;
  /** Resolve with the result instead of throwing when the command exits non-zero. */
  allowFailure?: boolean;
  /** Strings to hide when the command line is printed in an error (passwords). */
  redact?: string[];
}

export interface RunResult {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
  timedOut: boolean;
}

/** Quotes an argument for display only (never passed to a shell). */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function formatCommand(cmd: string, args: readonly string[], redact: readonly string[] = []): string {
  let line = [cmd, ...args].map(shellQuote).join(" ");
  for (const secret of redact) if (secret) line = line.replaceAll(secret, "***");
  return line;
}

/** process.env with `extra` on top; keys set to undefined are removed. */
export function mergeEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...extra })) if (v !== undefined) env[k] = v;
  return env;
}

function tail(text: string, max = 6000): string {
  return text.length > max ? `[…${text.length - max} chars cut…]\n${text.slice(-max)}` : text;
}

/** Describes a finished command for an assertion or error message. */
export function describeResult(r: RunResult): string {
  const how = r.timedOut
    ? `timed out after ${r.durationMs} ms`
    : r.signal
      ? `killed by ${r.signal}`
      : `exit code ${r.code}`;
  return [
    `$ ${r.command}`,
    `(${how}, ${(r.durationMs / 1000).toFixed(1)} s)`,
    `--- stdout ---`,
    tail(r.stdout.trim()) || "(empty)",
    `--- stderr ---`,
    tail(r.stderr.trim()) || "(empty)",
  ].join("\n");
}

export class CommandError extends Error {
  readonly result: RunResult;
  constructor(result: RunResult) {
    super(`Command failed:\n${describeResult(result)}`);
    this.name = "CommandError";
    this.result = result;
  }
}

/** Runs a command to completion, capturing its output. Throws CommandError unless it exits 0. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = formatCommand(cmd, args, opts.redact);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        cwd: opts.cwd,
        env: mergeEnv(opts.env),
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
      });
    } catch (err) {
      reject(new Error(`Could not start: ${command}: ${String(err)}`));
      return;
    }
    const pid = child.pid;
    if (pid !== undefined) liveGroups.add(pid);
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => errOut.push(b));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) killGroup(pid, "SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      if (pid !== undefined) liveGroups.delete(pid);
      reject(new Error(`Could not start: ${command}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) liveGroups.delete(pid);
      const result: RunResult = {
        command,
        code,
        signal,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(errOut).toString("utf8"),
        durationMs: Date.now() - started,
        timedOut,
      };
      if ((code === 0 && !timedOut) || opts.allowFailure) resolve(result);
      else reject(new CommandError(result));
    });
    child.stdin?.on("error", () => {
      /* the command may exit before reading its input */
    });
    child.stdin?.end(opts.input ?? "");
  });
}

// ---------------------------------------------------------------------------------------------
// Background processes
// ---------------------------------------------------------------------------------------------

/** Process groups we started and have not seen exit yet; killed on worker exit as a last resort. */
const liveGroups = new Set<number>();
const liveDirs = new Set<string>();

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* already gone */
  }
}

/** Synchronous last-resort cleanups (e.g. daemons that left our process group). */
const exitCleanups = new Set<() => void>();

/** Runs `fn` if the worker exits before the returned function is called. */
export function registerExitCleanup(fn: () => void): () => void {
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

function lastResortCleanup(): void {
  for (const fn of exitCleanups) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
  exitCleanups.clear();
  for (const pgid of liveGroups) killGroup(pgid, "SIGKILL");
  liveGroups.clear();
  for (const dir of liveDirs) {
    try {
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear();
}

process.once("exit", lastResortCleanup);
// Our children live in process groups of their own, so a Ctrl-C or a kill of the test worker does
// not reach them: clean up, then let the signal do what it would have done.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    lastResortCleanup();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

export interface BackgroundOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Shown in error messages, e.g. "dev server". */
  label?: string;
}

/** A long-running process started in its own process group, with its output kept in memory. */
export class BackgroundProcess {
  readonly label: string;
  readonly command: string;
  readonly child: ChildProcess;
  private output = "";
  private exited: Promise<void>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(cmd: string, args: readonly string[], opts: BackgroundOptions = {}) {
    this.label = opts.label ?? cmd;
    this.command = formatCommand(cmd, args);
    this.child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: mergeEnv(opts.env),
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const pid = this.child.pid;
    if (pid !== undefined) liveGroups.add(pid);
    const keep = (b: Buffer) => {
      this.output += b.toString("utf8");
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => {
      this.child.on("error", (err) => {
        this.output += `\n[spawn error: ${err.message}]\n`;
        this.exitInfo ??= { code: null, signal: null };
        resolve();
      });
      this.child.on("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Everything the process printed so far (stdout and stderr interleaved). */
  logs(): string {
    return this.output;
  }

  /** A message describing the process and the end of its output, for errors. */
  describe(reason: string): string {
    const status = this.exitInfo
      ? `exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal})`
      : "still running";
    return `${this.label}: ${reason}\n$ ${this.command}\n(${status})\n--- output ---\n${tail(this.output.trim()) || "(empty)"}`;
  }

  /**
   * Polls `check` every `intervalMs` until it returns true. Fails early (with the process output)
   * if the process exits, and after `timeoutMs`.
   */
  async waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000, intervalMs = 100): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(this.describe(`exited while waiting for ${what}`));
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(this.describe(`timed out after ${timeoutMs} ms waiting for ${what}`));
      await sleep(intervalMs);
    }
  }

  /** SIGTERM to the whole process group, SIGKILL after `graceMs`; resolves once the leader is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined) return;
    if (this.running) {
      killGroup(pid, "SIGTERM");
      const timer = setTimeout(() => killGroup(pid, "SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    // Children may outlive the leader: make sure none of the group is left.
    killGroup(pid, "SIGKILL");
    liveGroups.delete(pid);
  }
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

/**
 * A new temporary directory, removed by `removeTempDir` (or at exit as a last resort).
 * Names are short on purpose: unix socket paths inside must stay under 108 bytes.
 */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  liveDirs.add(dir);
  return dir;
}

/**
 * Lazily unmounts every mount point at or below `dir`, deepest first (dockerd bind-mounts its
 * data-root onto itself and leaves that mount behind if it is killed).
 */
export function unmountUnder(dir: string): void {
  let mountInfo: string;
  try {
    mountInfo = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return;
  }
  // Field 5 is the mount point, with spaces etc. escaped as octal.
  const points = mountInfo
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const p of points) {
    try {
      execFileSync("umount", ["-l", p], { stdio: "ignore" });
    } catch {
      /* best effort: rm will report what is left */
    }
  }
}

export function removeTempDir(dir: string | undefined): void {
  if (!dir) return;
  unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  liveDirs.delete(dir);
}

/** Runs every cleanup step even if some fail, then throws the first failure. */
export async function cleanupAll(steps: Array<(() => unknown) | undefined>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    if (!step) continue;
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw errors[0];
}
