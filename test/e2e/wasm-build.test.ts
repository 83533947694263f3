/**
 * The checked-in src/crypto/wasm/sha256.wasm is what its AssemblyScript source builds to: the
 * build (`pnpm build:wasm`) is rerun into a temp dir and the bytes compared.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./lib/dev-server.ts";

describe("wasm build", () => {
  it("rebuilds src/crypto/wasm/sha256.wasm byte for byte", () => {
    const result = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "build-wasm.mjs"), "--check"], { cwd: REPO_ROOT, encoding: "utf8" });
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain("matches its source");
  });
});
