#!/usr/bin/env node
// `pnpm dev`: runs the registry locally in workerd (wrangler dev) with a local R2 bucket persisted
// on disk, served over HTTPS with a self-signed certificate so that docker, podman and skopeo get
// an immediate TLS answer instead of stalling on a plain-HTTP port.
//
// Flags (anything else is refused; `pnpm dev --help` lists them):
//   --port N                  port to listen on (default: PORT, else 9999)
//   --ip ADDRESS              address to listen on (default: HOST, else 127.0.0.1)
//   --var NAME:VALUE          a Worker var, as wrangler dev's --var (repeatable); wins over the
//                             environment, e.g. --var ANONYMOUS_PULL:true
//
// Settings from the environment:
//   PORT, HOST                as --port, --ip
//   REGISTRY_STATE_DIR        where the local R2 bucket lives (default .wrangler/state)
//   USERNAME, PASSWORD        dev credentials (default: those of wrangler's `dev` environment)
//   READONLY_USERNAME, READONLY_PASSWORD, JWT_REGISTRY_TOKENS_PUBLIC_KEY, JWT_AUDIENCE,
//   JWT_ISSUER, TOKEN_SECRET, LOGIN_FAILURE_LIMIT, ANONYMOUS_PULL, CORS_ORIGINS, REGISTRIES_JSON
//   (and the password_env variables it names), REGISTRIES_TAG_TTL, REGISTRIES_TIMEOUT,
//   REGISTRIES_COPY_MAX_SIZE, PUSH_COMPATIBILITY_MODE, MAX_CHUNK_SIZE, UPLOAD_PART_SIZE, GC_MODE,
//   GC_GRACE_PERIOD, GC_UPLOAD_MAX_AGE, LOG_R2_OPERATIONS, R2_LIMITS, R2_SUBREQUEST_LIMIT,
//   NOTIFICATIONS_JSON (and the headers_env variables it names), IMMUTABLE_TAGS, RETENTION_JSON,
//   RETENTION_MAX_REPOSITORIES, RETENTION_MAX_TAGS
//                             passed to the Worker when set
//   DEV_PROTOCOL=http         serve plain HTTP instead (clients then need their http switches)
//   WRANGLER_LOG              wrangler's log level, its output then shown unfiltered. Unset, the
//                             Worker's own log lines (console.log, console.error, ...) are shown
//                             and wrangler's start-up banner, bindings table and per-request lines
//                             are left out.
//
// Notifications go through a local queue bound as NOTIFICATIONS_QUEUE (unless the config binds one).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { stripVTControlCharacters } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Worker settings read from the environment when set. */
const PASSED_THROUGH = [
  "READONLY_USERNAME",
  "READONLY_PASSWORD",
  "JWT_REGISTRY_TOKENS_PUBLIC_KEY",
  "JWT_AUDIENCE",
  "JWT_ISSUER",
  "TOKEN_SECRET",
  "LOGIN_FAILURE_LIMIT",
  "ANONYMOUS_PULL",
  "CORS_ORIGINS",
  "REGISTRIES_JSON",
  "PUSH_COMPATIBILITY_MODE",
  "MAX_CHUNK_SIZE",
  "UPLOAD_PART_SIZE",
  "REGISTRIES_TAG_TTL",
  "REGISTRIES_TIMEOUT",
  "REGISTRIES_COPY_MAX_SIZE",
  "GC_MODE",
  "GC_GRACE_PERIOD",
  "GC_UPLOAD_MAX_AGE",
  "LOG_R2_OPERATIONS",
  "R2_LIMITS",
  "R2_SUBREQUEST_LIMIT",
  "NOTIFICATIONS_JSON",
  "IMMUTABLE_TAGS",
  "RETENTION_JSON",
  "RETENTION_MAX_REPOSITORIES",
  "RETENTION_MAX_TAGS",
];

const USAGE = `usage: pnpm dev [--port N] [--ip ADDRESS] [--var NAME:VALUE]...

  --port N            port to listen on (default: PORT, else 9999)
  --ip ADDRESS        address to listen on (default: HOST, else 127.0.0.1)
  --var NAME:VALUE    set a Worker var, as wrangler dev's --var; repeat it for more
                      (e.g. --var ANONYMOUS_PULL:true); wins over the environment
  --help              this text

Other settings come from the environment (USERNAME, PASSWORD, REGISTRY_STATE_DIR, DEV_PROTOCOL,
and every Worker setting of README's Configuration table): see README's Quick start.`;

/** Exits with a usage error: what was wrong, then what is supported. */
function usageError(message) {
  console.error(`r2-registry: pnpm dev: ${message}\n\n${USAGE}`);
  process.exit(2);
}

/**
 * The command line: `--port`, `--ip` and `--var` (each as `--flag value` or `--flag=value`),
 * `--help`. A lone `--` (as `npm run dev -- --port 1` passes on) is skipped; anything else is an
 * error rather than silently ignored.
 */
function parseArgs(argv) {
  const parsed = { vars: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") continue;
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!["--port", "--ip", "--var"].includes(name)) {
      usageError(`unknown ${arg.startsWith("-") ? "flag" : "argument"} ${JSON.stringify(arg)}`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) usageError(`${name} needs a value`);
    if (name === "--port") {
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) usageError(`--port ${value}: not a port number`);
      parsed.port = Number(value);
    } else if (name === "--ip") {
      parsed.ip = value;
    } else {
      const colon = value.indexOf(":");
      if (colon <= 0) usageError(`--var ${value}: write it as --var NAME:VALUE`);
      parsed.vars.push([value.slice(0, colon), value.slice(colon + 1)]);
    }
  }
  return parsed;
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Reads a string var of the `dev` environment from the wrangler config (best effort). */
function devVar(toml, name) {
  const section = toml.split(/^\[env\.dev\.vars\]\s*$/m)[1];
  if (!section) return undefined;
  const body = section.split(/^\[/m)[0];
  const m = body.match(new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, "m"));
  return m?.[1];
}

const cli = parseArgs(process.argv.slice(2));
const port = cli.port ?? Number(process.env.PORT ?? 9999);
const host = cli.ip ?? process.env.HOST ?? "127.0.0.1";
const protocol = process.env.DEV_PROTOCOL === "http" ? "http" : "https";
const stateDir = resolve(process.env.REGISTRY_STATE_DIR ?? join(root, ".wrangler", "state"));
const source = existsSync(join(root, "wrangler.toml")) ? "wrangler.toml" : "wrangler.toml.example";
const toml = readFileSync(join(root, source), "utf8");
// The Worker's vars: the settings given in the environment (e.g. ANONYMOUS_PULL=true pnpm dev),
// then those given with --var, which win.
const vars = new Map();
for (const name of PASSED_THROUGH) if (process.env[name] !== undefined) vars.set(name, process.env[name]);
for (const [name, value] of cli.vars) vars.set(name, value);
// …and the upstream passwords REGISTRIES_JSON names with password_env.
try {
  for (const entry of JSON.parse(vars.get("REGISTRIES_JSON") || "[]")) {
    const name = entry?.password_env;
    if (typeof name === "string" && !vars.has(name) && process.env[name] !== undefined) vars.set(name, process.env[name]);
  }
} catch {
  // The Worker reports a bad REGISTRIES_JSON itself.
}
// …and the header secrets NOTIFICATIONS_JSON names with headers_env.
try {
  for (const entry of JSON.parse(vars.get("NOTIFICATIONS_JSON") || "[]")) {
    for (const name of Object.values(entry?.headers_env ?? {})) {
      if (typeof name === "string" && !vars.has(name) && process.env[name] !== undefined) vars.set(name, process.env[name]);
    }
  }
} catch {
  // The Worker reports a bad NOTIFICATIONS_JSON itself.
}
const username = vars.get("USERNAME") || process.env.USERNAME || devVar(toml, "USERNAME") || "hello";
const password = vars.get("PASSWORD") || process.env.PASSWORD || devVar(toml, "PASSWORD") || "world";
vars.set("USERNAME", username);
vars.set("PASSWORD", password);

// wrangler only reads files named *.toml / *.json(c): write the chosen config where it can read it,
// with `main` made absolute so the copy can live anywhere.
const generated = join(root, ".wrangler", `dev-${port}.toml`);
mkdirSync(dirname(generated), { recursive: true });
mkdirSync(stateDir, { recursive: true });
writeFileSync(
  generated,
  toml.replace(/^main\s*=\s*"([^"]+)"/m, (_, main) => `main = ${JSON.stringify(resolve(root, main))}`) + devQueue(toml, port),
);

/**
 * A local queue (miniflare runs it in memory) carrying notifications to the Worker's own consumer,
 * named after the port so that dev servers side by side keep their own; none if the config binds one.
 */
function devQueue(toml, port) {
  if (/^\s*\[\[env\.dev\.queues\.producers\]\]/m.test(toml)) return "";
  const queue = `r2-registry-events-dev-${port}`;
  return [
    "",
    "[[env.dev.queues.producers]]",
    'binding = "NOTIFICATIONS_QUEUE"',
    `queue = "${queue}"`,
    "",
    "[[env.dev.queues.consumers]]",
    `queue = "${queue}"`,
    "max_batch_size = 10",
    "max_batch_timeout = 1",
    "max_retries = 3",
    "",
  ].join("\n");
}

const inspectorPort = await freePort();
const args = [
  "dev",
  "--config", generated,
  "--env", "dev",
  "--ip", host,
  "--port", String(port),
  "--local-protocol", protocol,
  "--persist-to", stateDir,
  "--inspector-port", String(inspectorPort),
  "--show-interactive-dev-session=false",
];
for (const [name, value] of vars) args.push("--var", `${name}:${value}`);
const wranglerBin = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
// wrangler hands the Worker's console.log to its logger at its `log` level (console.error at
// `error`): below `log` the Worker's own lines are lost. So it runs at `log`, and its stdout goes
// through wranglerNoise() to drop wrangler's own chatter. WRANGLER_LOG set: as it is, unfiltered.
const filtered = process.env.WRANGLER_LOG === undefined;
const child = spawn(process.execPath, [wranglerBin, ...args], {
  cwd: root,
  stdio: ["ignore", filtered ? "pipe" : "inherit", "inherit"],
  env: {
    ...process.env,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
    // No banner, and so no update check asking the npm registry at every start.
    WRANGLER_HIDE_BANNER: "true",
    WRANGLER_LOG: process.env.WRANGLER_LOG ?? "log",
  },
});
if (filtered) {
  const noise = wranglerNoise();
  createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => {
    if (!noise(line)) process.stdout.write(`${line}\n`);
  });
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => child.kill(sig));
}
// `close`, not `exit`: the Worker's last lines are passed on before this process ends.
child.on("close", (code, signal) => {
  rmSync(generated, { force: true });
  process.exit(code ?? (signal ? 1 : 0));
});

/**
 * A filter for wrangler's stdout at log level: true for the lines wrangler prints about itself
 * (its `[wrangler:info]` line per request and "Ready on", "⎔ Starting local server...", the
 * bindings table, which lists every var, passwords included), false for everything else: the
 * Worker's console.log and console.info lines and wrangler's `[wrangler:warn]`/`[wrangler:error]`
 * (an uncaught exception in the Worker, with its stack).
 */
function wranglerNoise() {
  let table = false;
  return (line) => {
    const text = stripVTControlCharacters(line);
    if (table) {
      // The table ends with a blank line.
      if (text.trim() === "") table = false;
      return true;
    }
    if (/has access to the following bindings:\s*$|^The following bindings need to be provisioned:/.test(text)) {
      table = true;
      return true;
    }
    return (
      /^\[wrangler(-[\w]+)?:(info|debug)\]/.test(text) ||
      /^\s*⎔ /.test(text) ||
      /^Using (vars|secrets) defined in /.test(text) ||
      /^No bindings found\.?$/.test(text) ||
      text.trim() === ""
    );
  };
}

function probe() {
  return new Promise((ok) => {
    const send = protocol === "https" ? request : httpRequest;
    const req = send(
      { host, port, path: "/", method: "GET", rejectUnauthorized: false, timeout: 2000 },
      (res) => {
        res.resume();
        ok(res.statusCode === 200);
      },
    );
    req.on("error", () => ok(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

const started = Date.now();
while (!(await probe())) {
  // wrangler gave up (its error is on stderr): the close handler exits with its code.
  if (child.exitCode !== null || child.signalCode !== null) await new Promise(() => {});
  if (Date.now() - started > 120_000) {
    console.error("r2-registry: the dev server did not answer within 120 s");
    child.kill("SIGTERM");
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 250));
}

const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
const tlsNote = protocol === "https" ? " (self-signed TLS; clients treat 127.0.0.1 as insecure)" : "";
console.log(
  [
    "",
    `r2-registry is ready at ${protocol}://${address}${tlsNote}`,
    `  web UI: ${protocol}://${address}/ui/`,
    `  credentials: ${username} / ${password}`,
    `  local R2 bucket: ${stateDir}`,
    `  docker login ${address} -u ${username} -p ${password}`,
    "",
  ].join("\n"),
);
