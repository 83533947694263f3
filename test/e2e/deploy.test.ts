import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "r2-registry-deploy-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("wrangler deploy --dry-run --env production", () => {
  it("bundles the Worker from wrangler.toml.example", async () => {
    // What a user does: copy the example to wrangler.toml (here into a scratch folder).
    const example = readFileSync(join(root, "wrangler.toml.example"), "utf8");
    const config = join(dir, "wrangler.toml");
    writeFileSync(config, example.replace(/^main = "([^"]+)"/m, (_, main) => `main = ${JSON.stringify(join(root, main))}`));
    const out = join(dir, "dist");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", out, "--config", config, "--env", "production"],
      { cwd: dir, env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" } },
    );
    expect(stdout).toContain("env.REGISTRY");
    expect(stdout).toContain("--dry-run: exiting now.");
    const bundle = join(out, "index.js");
    expect(existsSync(bundle)).toBe(true);
    expect(statSync(bundle).size).toBeGreaterThan(10_000);
  });
});
