#!/usr/bin/env node
/**
 * `pnpm push`: pushes an image from the local Docker engine, a `docker save` archive or an OCI
 * image layout to an OCI registry in chunks small enough for Cloudflare's request body limit,
 * resuming failed chunks. This file parses the command line, reads credentials, and runs the push.
 */
import { parseArgs } from "node:util";
import { summarizePlan } from "./image.ts";
import { createProgress } from "./progress.ts";
import { formatTotals, runPush } from "./push.ts";
import { formatTarget, parseTarget } from "./reference.ts";
import { RegistryClient, type Credentials } from "./registry-client.ts";
import { parseSource, planSource } from "./sources/index.ts";

const HELP = `Usage: pnpm push --source <source> <registry>/<repository>[:<tag>] [options]

Pushes an image to an OCI registry (made for r2-registry on Cloudflare Workers), in chunks no
larger than the registry accepts, resuming a failed chunk where the registry stands.

Sources (--source, -s):
  docker:<image>              an image of the local Docker engine (runs \`docker image save\`;
                              honours DOCKER_HOST)
  archive:<file>[:<name>]     a \`docker save\` archive (classic or docker 25+ layout), or an
                              OCI layout in a tar; <name> picks one image of several
  oci:<dir>[:<tag>]           an OCI image layout directory; <tag> is its ref.name
  <path>                      a directory is read as oci:, a file as archive:
  A multi-platform index is pushed whole (every platform, then the index).

Destination: host[:port]/repository[:tag] (tag defaults to latest), or …@sha256:<digest>.
  localhost, 127.0.0.1 and [::1] are spoken to over plain HTTP (HTTPS if the port answers in
  TLS), anything else over HTTPS; --https / --http (or an https:// / http:// prefix) force one.

Credentials:
  -u, --username <name>       Basic auth user (or env REGISTRY_USERNAME)
  -p, --password <password>   Basic auth password (or env REGISTRY_PASSWORD)
      --password-stdin        read the password from standard input
      --token <jwt>           send "Authorization: Bearer <jwt>" (or env REGISTRY_TOKEN;
                              --token - or --token-stdin reads it from standard input)
  A registry answering 401 with a Bearer challenge gets a token from its realm with the
  Basic credentials.

Options:
      --insecure              do not verify the TLS certificate (needed for \`pnpm dev\`, whose
                              certificate is self-signed)
      --https, --http         force the scheme
      --chunk-size <bytes>    largest PATCH body (default: what the registry advertises in
                              OCI-Chunk-Max-Length, else 100000000); accepts 50MB, 64MiB, …
      --concurrency <n>       blobs pushed at once (default 3)
      --retries <n>           retries of a failed request, each resuming where the registry
                              stands (default 5)
      --retry-delay <ms>      first backoff delay, doubled each retry (default 1000)
      --timeout <seconds>     give up on a connection silent this long (default 300)
      --mount-from <repo>     mount blobs from this repository of the same registry instead of
                              uploading them (uploads what it does not have)
      --compress              gzip the uncompressed layers of a docker save archive (changes
                              their digests and the manifest's; the image ID stays)
      --platform <os/arch[/variant]>  push only this platform of a multi-platform index
      --tmpdir <dir>          where to put docker save output and --compress files (default $TMPDIR)
  -q, --quiet                 no progress output
  -v, --verbose               also log every HTTP request (method, path, Content-Range, status)
      --progress <mode>       auto (default), bars, or lines
  -h, --help                  this help

Prints <registry>/<repository>@<digest> of the pushed manifest on standard output.

Examples:
  pnpm push -s docker:myimage:latest 127.0.0.1:9999/team/app:1.0 --insecure -u hello --password-stdin
  pnpm push -s archive:./image.tar registry.example.workers.dev/team/app:1.0 -u ci -p "$PASSWORD"
  pnpm push -s oci:./layout:v1 registry.example.workers.dev/team/app:1.0 --token "$JWT"
`;

class UsageError extends Error {}

/** "50MB" → 50000000, "64MiB" → 67108864, "1000" → 1000. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size ${JSON.stringify(text)} (e.g. 50000000, 50MB, 64MiB)`);
  const power = " kmgt".indexOf(m[2]!.toLowerCase() || " ");
  const value = Math.floor(Number(m[1]) * (m[3] ? 1024 : 1000) ** power);
  if (!(value > 0)) throw new UsageError(`invalid size ${JSON.stringify(text)}`);
  return value;
}

function positiveInt(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  return n;
}

async function readStdin(what: string): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`${what}: `);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (!text) throw new UsageError(`nothing to read the ${what.toLowerCase()} from on standard input`);
  return text;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      source: { type: "string", short: "s" },
      username: { type: "string", short: "u" },
      password: { type: "string", short: "p" },
      "password-stdin": { type: "boolean" },
      token: { type: "string" },
      "token-stdin": { type: "boolean" },
      insecure: { type: "boolean" },
      https: { type: "boolean" },
      http: { type: "boolean" },
      "chunk-size": { type: "string" },
      concurrency: { type: "string" },
      retries: { type: "string" },
      "retry-delay": { type: "string" },
      timeout: { type: "string" },
      "mount-from": { type: "string" },
      compress: { type: "boolean" },
      platform: { type: "string" },
      tmpdir: { type: "string" },
      quiet: { type: "boolean", short: "q" },
      verbose: { type: "boolean", short: "v" },
      progress: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.source) throw new UsageError("--source is required (docker:<image>, archive:<file>, oci:<dir>)");
  if (positionals.length !== 1) throw new UsageError(`give exactly one destination (host/repository[:tag]), got ${positionals.length}`);
  const target = parseTarget(positionals[0]!, { https: values.https, http: values.http });
  const source = parseSource(values.source);

  // Credentials: flags, then stdin, then the environment.
  const credentials: Credentials = {};
  const wantsTokenStdin = values["token-stdin"] || values.token === "-";
  if (values["password-stdin"] && wantsTokenStdin) throw new UsageError("--password-stdin and --token-stdin both want standard input");
  if (wantsTokenStdin) credentials.token = await readStdin("Token");
  else if (values.token) credentials.token = values.token;
  credentials.username = values.username ?? process.env.REGISTRY_USERNAME ?? undefined;
  if (values["password-stdin"]) credentials.password = await readStdin("Password");
  else credentials.password = values.password ?? process.env.REGISTRY_PASSWORD ?? undefined;
  if (!credentials.token && !values.username && !values.password && process.env.REGISTRY_TOKEN) credentials.token = process.env.REGISTRY_TOKEN;
  if (credentials.password !== undefined && credentials.username === undefined) throw new UsageError("a password needs a username (-u)");
  if (credentials.username !== undefined && credentials.password === undefined && !credentials.token) {
    throw new UsageError("a username needs a password (-p, --password-stdin, or REGISTRY_PASSWORD)");
  }

  const concurrency = positiveInt("--concurrency", values.concurrency, 3);
  const retries = positiveInt("--retries", values.retries, 5, 0);
  const retryDelayMs = positiveInt("--retry-delay", values["retry-delay"], 1000, 0);
  const timeoutMs = positiveInt("--timeout", values.timeout, 300) * 1000;
  const chunkSize = values["chunk-size"] ? parseSize(values["chunk-size"]) : undefined;
  const mode = values.quiet
    ? "quiet"
    : values.progress === "bars"
      ? "tty"
      : values.progress === "lines"
        ? "lines"
        : values.progress === undefined || values.progress === "auto"
          ? process.stderr.isTTY
            ? "tty"
            : "lines"
          : (() => {
              throw new UsageError(`--progress must be auto, bars or lines, not ${JSON.stringify(values.progress)}`);
            })();
  const progress = createProgress(mode);

  const plan = await planSource(source, {
    compress: values.compress,
    platform: values.platform,
    tmpDir: values.tmpdir,
    log: (m) => progress.info(m),
  });
  const cleanupOnSignal = (signal: NodeJS.Signals) => {
    progress.end();
    void plan.cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", cleanupOnSignal);
  process.once("SIGTERM", cleanupOnSignal);
  const client = new RegistryClient({
    baseUrl: target.baseUrl,
    repository: target.repository,
    credentials,
    insecure: !!values.insecure,
    timeoutMs,
    maxSockets: concurrency + 2,
    mountFrom: values["mount-from"],
    ...(target.httpByDefault ? { tlsFallback: (m: string) => progress.info(m) } : {}),
    ...(values.verbose ? { trace: (line: string) => progress.info(`  ${line}`) } : {}),
  });
  try {
    progress.info(`pushing ${plan.description} to ${target.baseUrl}/${target.repository}${target.tag ? `:${target.tag}` : ""}: ${summarizePlan(plan)}`);
    const result = await runPush(plan, client, target, { concurrency, chunkSize, retries, retryDelayMs, mountFrom: values["mount-from"] }, progress);
    progress.info(formatTotals(result));
    process.stdout.write(`${target.host}/${target.repository}@${result.digest}\n`);
    if (mode !== "quiet") process.stderr.write(`pushed ${formatTarget(target)} (${result.mediaType}) digest ${result.digest}\n`);
    return 0;
  } finally {
    client.close();
    await plan.cleanup();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    process.stderr.write(`push: error: ${err instanceof Error ? err.message : String(err)}\n`);
    if (usage) process.stderr.write("run with --help for usage\n");
    process.exit(usage ? 2 : 1);
  },
);
