#!/usr/bin/env node
// `pnpm dev`: runs the registry locally in workerd (wrangler dev) with a local R2 bucket persisted
// on disk, served over HTTPS with a self-signed certificate so that docker, podman and skopeo get
// an immediate TLS answer instead of stalling on a plain-HTTP port.
//
// Settings (environment or flags):
//   PORT / --port             port to listen on (default 9999)
//   HOST / --ip               address to listen on (default 127.0.0.1)
//   REGISTRY_STATE_DIR        where the local R2 bucket lives (default .wrangler/state)
//   USERNAME, PASSWORD        dev credentials (default: those of wrangler's `dev` environment)
//   READONLY_USERNAME, READONLY_PASSWORD, JWT_REGISTRY_TOKENS_PUBLIC_KEY, JWT_AUDIENCE,
//   JWT_ISSUER, TOKEN_SECRET, LOGIN_FAILURE_LIMIT, ANONYMOUS_PULL, CORS_ORIGINS, REGISTRIES_JSON
//   (and the password_env variables it names), REGISTRIES_TAG_TTL, REGISTRIES_TIMEOUT,
//   PUSH_COMPATIBILITY_MODE, MAX_CHUNK_SIZE, UPLOAD_PART_SIZE, GC_MODE, GC_GRACE_PERIOD,
//   GC_UPLOAD_MAX_AGE, LOG_R2_OPERATIONS
//                             passed to the Worker when set
//   DEV_PROTOCOL=http         serve plain HTTP instead (clients then need their http switches)
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
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
  "GC_MODE",
  "GC_GRACE_PERIOD",
  "GC_UPLOAD_MAX_AGE",
  "LOG_R2_OPERATIONS",
];

function flag(name) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`${name}=`));
  return eq ? eq.slice(name.length + 1) : undefined;
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

const port = Number(flag("--port") ?? process.env.PORT ?? 9999);
const host = flag("--ip") ?? process.env.HOST ?? "127.0.0.1";
const protocol = process.env.DEV_PROTOCOL === "http" ? "http" : "https";
const stateDir = resolve(process.env.REGISTRY_STATE_DIR ?? join(root, ".wrangler", "state"));
const source = existsSync(join(root, "wrangler.toml")) ? "wrangler.toml" : "wrangler.toml.example";
const toml = readFileSync(join(root, source), "utf8");
const username = process.env.USERNAME || devVar(toml, "USERNAME") || "hello";
const password = process.env.PASSWORD || devVar(toml, "PASSWORD") || "world";

// wrangler only reads files named *.toml / *.json(c): write the chosen config where it can read it,
// with `main` made absolute so the copy can live anywhere.
const generated = join(root, ".wrangler", `dev-${port}.toml`);
mkdirSync(dirname(generated), { recursive: true });
mkdirSync(stateDir, { recursive: true });
writeFileSync(
  generated,
  toml.replace(/^main\s*=\s*"([^"]+)"/m, (_, main) => `main = ${JSON.stringify(resolve(root, main))}`),
);

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
  "--var", `USERNAME:${username}`,
  "--var", `PASSWORD:${password}`,
];
// Other settings given in the environment reach the Worker too (e.g. ANONYMOUS_PULL=true pnpm dev).
// …and so do the upstream passwords REGISTRIES_JSON names with password_env.
const secrets = [];
try {
  for (const entry of JSON.parse(process.env.REGISTRIES_JSON || "[]")) {
    if (typeof entry?.password_env === "string") secrets.push(entry.password_env);
  }
} catch {
  // The Worker reports a bad REGISTRIES_JSON itself.
}
for (const name of [...PASSED_THROUGH, ...secrets]) {
  if (process.env[name] !== undefined) args.push("--var", `${name}:${process.env[name]}`);
}
const wranglerBin = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const child = spawn(process.execPath, [wranglerBin, ...args], {
  cwd: root,
  stdio: ["ignore", "inherit", "inherit"],
  env: {
    ...process.env,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_LOG: process.env.WRANGLER_LOG ?? "warn",
  },
});

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => child.kill(sig));
}
child.on("exit", (code, signal) => {
  rmSync(generated, { force: true });
  process.exit(code ?? (signal ? 1 : 0));
});

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
  if (child.exitCode !== null) break;
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
