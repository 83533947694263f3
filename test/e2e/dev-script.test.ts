/**
 * `pnpm dev` (scripts/dev.mjs) itself: the Worker's own log lines reach its output (wrangler
 * hides them at its `warn` level), `--var NAME:VALUE` reaches the Worker as with `wrangler dev`,
 * and a flag it does not know is refused with the list of those it knows.
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT, startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { describeResponse, httpFetch } from "./lib/http.ts";
import { run } from "./lib/processes.ts";

const DEV = join(REPO_ROOT, "scripts", "dev.mjs");

/** Runs `pnpm dev <args>` expecting it to stop at once. */
function devExits(args: string[]) {
  return run(process.execPath, [DEV, ...args], { cwd: REPO_ROOT, allowFailure: true, timeoutMs: 30_000 });
}

describe("pnpm dev flags", () => {
  it("refuses a flag it does not know, listing those it takes", async () => {
    const r = await devExits(["--persist-to", "/tmp/elsewhere"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag "--persist-to"');
    for (const known of ["--port N", "--ip ADDRESS", "--var NAME:VALUE"]) expect(r.stderr).toContain(known);
    expect(r.stdout).not.toContain("is ready");
  });

  it("refuses a --var without NAME:VALUE, and a stray argument", async () => {
    const badVar = await devExits(["--var", "ANONYMOUS_PULL=true"]);
    expect(badVar.code).toBe(2);
    expect(badVar.stderr).toContain("write it as --var NAME:VALUE");
    const stray = await devExits(["9999"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('unknown argument "9999"');
  });

  it("--help lists the flags and exits 0", async () => {
    const r = await devExits(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("--var NAME:VALUE");
  });
});

describe("pnpm dev --var and the Worker's log", () => {
  let server: RunningDevServer | undefined;
  afterAll(() => server?.stop());

  it("passes --var to the Worker and shows its console.log and console.error lines", async () => {
    server = await startDevServer({
      // `--var NAME=VALUE` style is refused above; this is wrangler's own syntax. A token key that
      // is no key makes the Worker log an error (console.error) when a token comes.
      args: ["--var", "ANONYMOUS_PULL:true", "--var=JWT_REGISTRY_TOKENS_PUBLIC_KEY:bm90IGEga2V5"],
      // WRANGLER_LOG unset: the default is what is tested, not a level the caller happens to have.
      env: { LOG_R2_OPERATIONS: "true", WRANGLER_LOG: undefined, ANONYMOUS_PULL: undefined, JWT_REGISTRY_TOKENS_PUBLIC_KEY: undefined },
    });
    // Without the var, GET /v2/ without credentials is a 401 with a Basic challenge, and so is
    // every other request (see quick-start.test.ts). With it, /v2/ points to the token endpoint
    // and pulls need no credentials.
    const base = `${server.url}/v2/`;
    const probe = await httpFetch({ url: base });
    expect(probe.status, describeResponse("GET", base, probe)).toBe(401);
    expect(probe.headers["www-authenticate"], describeResponse("GET", base, probe)).toMatch(/^Bearer realm=/);
    const catalogUrl = `${server.url}/v2/_catalog`;
    const catalog = await httpFetch({ url: catalogUrl });
    expect(catalog.status, describeResponse("GET", catalogUrl, catalog)).toBe(200);

    // console.log of LOG_R2_OPERATIONS, printed once the request is done.
    const line = "r2-registry: R2 operations for GET /v2/_catalog: class A ";
    await server.process.waitUntil(`"${line}"`, () => server!.logs().includes(line), 15_000);

    // console.error of the bad token key.
    const tagsUrl = `${server.url}/v2/app/tags/list`;
    const bearer = await httpFetch({ url: tagsUrl, headers: { Authorization: "Bearer a.b.c" } });
    expect(bearer.status, describeResponse("GET", tagsUrl, bearer)).toBe(500);
    const error = "tokens cannot be verified until it is fixed";
    await server.process.waitUntil(`"${error}"`, () => server!.logs().includes(error), 15_000);

    // wrangler's own chatter stays out: its per-request lines and its bindings table (which
    // would print every var, passwords included).
    const logs = server.logs();
    expect(logs).not.toContain("[wrangler:info]");
    expect(logs).not.toContain("following bindings");
    expect(logs).not.toContain("Starting local server");
  });
});
