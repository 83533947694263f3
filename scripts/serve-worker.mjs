#!/usr/bin/env node
// Serves a Worker the way `pnpm dev` does: bundled by wrangler exactly as `wrangler deploy` bundles
// it (its module rules, .wasm modules beside the script), its bindings read from the wrangler
// config, and run by miniflare in workerd with its local state persisted on disk, over HTTPS with a
// self-signed certificate or over plain HTTP.
//
// Why not `wrangler dev`: it puts a proxy Worker of its own (for live reload) in front of the
// Worker, a second HTTP hop through another workerd. Measured on this machine with the bench's
// minimal Worker: a `GET /v2/` on a kept-alive connection takes 4.1 ms through it against 0.5 ms
// served directly, and a 40 MB `PUT` about 470 ms against 350 ms.
//
// scripts/dev.mjs uses serveWorker(); the benchmarks run this file as a command so that their
// minimal Workers are served by the same stack as the registry:
//   node scripts/serve-worker.mjs --config bench/minimal-worker/wrangler.minimal.toml --port 8788
//     [--env NAME] [--ip 127.0.0.1] [--protocol https|http] [--persist-to DIR] [--var NAME:VALUE]...
// It prints "ready at <url>" once the Worker answers. On SIGINT or SIGTERM, miniflare's own exit
// hook stops workerd and exits; an exit handler then removes the bundle.
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Log, LogLevel, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * The module miniflare starts: the bundled Worker's handlers, with one thing added to `fetch`. A
 * request body the Worker left unread (an error answered before the body, e.g. a 401 or 404 to a
 * `PATCH`) is read to its end before the answer goes. workerd's HTTP server otherwise closes the
 * connection after such an answer without saying so (no `Connection: close`), and a client that
 * already sent its next request on that kept-alive connection gets a reset. On Cloudflare the
 * edge, not the Worker, owns the connection; `wrangler dev`'s proxy hid it the same way.
 */
const ENTRY = "serve-entry.js";
const entrySource = (bundle) => `// Written by scripts/serve-worker.mjs: see entrySource there.
import worker from "./${bundle}";
export * from "./${bundle}";
const entry = {};
for (const [name, value] of Object.entries(worker)) entry[name] = typeof value === "function" ? value.bind(worker) : value;
entry.fetch = async (request, env, ctx) => {
  const response = await worker.fetch(request, env, ctx);
  if (request.body && !request.bodyUsed && !request.body.locked) await request.body.pipeTo(new WritableStream()).catch(() => {});
  return response;
};
export default entry;
`;

/**
 * Bundles `config`'s Worker (environment `env`) into `outdir` and serves it on host:port, its local
 * R2 buckets (and KV, D1, cache) under `persistTo/v3`, where `wrangler dev --persist-to` keeps them.
 * `verbose`: miniflare's own lines too (start-up, one per request), which cost time per request.
 * Answers once the Worker is ready; `dispose()` stops it and removes the bundle, as does the
 * process's exit (miniflare stops workerd and exits on SIGINT and SIGTERM by itself).
 *
 * @example
 *   const worker = await serveWorker({ config: ".wrangler/dev.toml", env: "dev", outdir: ".wrangler/dev-9999",
 *     vars: new Map([["USERNAME", "hello"]]), host: "127.0.0.1", port: 9999, protocol: "https",
 *     persistTo: ".wrangler/state" });
 *   await worker.dispose();
 */
export async function serveWorker({ config, env, outdir, vars = new Map(), host, port, protocol = "https", persistTo, verbose = false }) {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const build = spawnSync(
    process.execPath,
    [join(root, "node_modules", "wrangler", "bin", "wrangler.js"), "deploy", "--dry-run", "--outdir", outdir, "--config", config, ...(env ? ["--env", env] : [])],
    { cwd: root, encoding: "utf8", env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", WRANGLER_LOG: "warn" } },
  );
  if (build.status !== 0) {
    rmSync(outdir, { recursive: true, force: true });
    throw new Error(`bundling the Worker of ${config} failed (wrangler deploy --dry-run):\n${build.stdout}${build.stderr}`);
  }
  const { workerOptions, main: source = "index" } = unstable_getMiniflareWorkerOptions(config, env);
  // wrangler names the bundle after the config's `main` (src/index.ts → index.js).
  writeFileSync(join(outdir, ENTRY), entrySource(`${basename(source, extname(source))}.js`));
  const removeBundle = () => rmSync(outdir, { recursive: true, force: true });
  process.once("exit", removeBundle);
  // miniflare's exit hook stops workerd on SIGINT and SIGTERM; a hang-up (a closed terminal) too.
  if (process.listenerCount("SIGHUP") === 0) process.on("SIGHUP", () => process.exit(129));
  const mf = new Miniflare({
    ...workerOptions,
    rootPath: outdir,
    modules: true,
    modulesRoot: outdir,
    scriptPath: join(outdir, ENTRY),
    // wrangler's bundle is an ES module (miniflare would take an imported .js for CommonJS).
    modulesRules: [{ type: "ESModule", include: ["**/*.js"] }, ...(workerOptions.modulesRules ?? [])],
    bindings: { ...workerOptions.bindings, ...Object.fromEntries(vars) },
    host,
    port,
    https: protocol === "https",
    // The `cf` object of requests: a fixed one, not fetched from Cloudflare at every start.
    cf: false,
    log: new Log(verbose ? LogLevel.INFO : LogLevel.WARN),
    logRequests: verbose,
    // Every kind of local state (R2, KV, D1, cache, ...) under <persistTo>/v3, as wrangler dev keeps it.
    defaultPersistRoot: join(persistTo, "v3"),
  });
  try {
    await mf.ready;
  } catch (error) {
    await mf.dispose().catch(() => {});
    removeBundle();
    throw error;
  }
  return {
    async dispose() {
      await mf.dispose();
      process.off("exit", removeBundle);
      removeBundle();
    },
  };
}

/** The command: flags as in the header, `--flag value` or `--flag=value`. */
async function main(argv) {
  const opts = { vars: new Map(), host: "127.0.0.1", protocol: "https" };
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].indexOf("=");
    const flag = eq > 0 ? argv[i].slice(0, eq) : argv[i];
    const value = eq > 0 ? argv[i].slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--config") opts.config = resolve(value);
    else if (flag === "--env") opts.env = value;
    else if (flag === "--port") opts.port = Number(value);
    else if (flag === "--ip") opts.host = value;
    else if (flag === "--protocol") opts.protocol = value;
    else if (flag === "--persist-to") opts.persistTo = resolve(value);
    else if (flag === "--var") opts.vars.set(value.slice(0, value.indexOf(":")), value.slice(value.indexOf(":") + 1));
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!opts.config || !opts.port) throw new Error("--config and --port are needed");
  opts.persistTo ??= join(dirname(opts.config), ".wrangler", "state");
  opts.outdir = join(root, ".wrangler", `serve-${opts.port}`);
  await serveWorker(opts);
  console.log(`ready at ${opts.protocol}://${opts.host}:${opts.port}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(`serve-worker: ${error instanceof Error ? error.message : error}`);
    process.exit(1);
  });
}
