#!/usr/bin/env node
// `pnpm build:wasm`: compiles the AssemblyScript SHA-256 (src/crypto/wasm/sha256.as.ts) into
// src/crypto/wasm/sha256.wasm, which is checked in so that dev, tests and deploys need no build
// step. The build is deterministic; `--check` proves the checked-in file matches its source.
//
//   node scripts/build-wasm.mjs            writes src/crypto/wasm/sha256.wasm
//   node scripts/build-wasm.mjs OUT.wasm   writes OUT.wasm instead
//   node scripts/build-wasm.mjs --check    builds into a temp dir and exits 1 unless the bytes
//                                          equal the checked-in file (test/e2e/wasm-build.test.ts)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const source = join("src", "crypto", "wasm", "sha256.as.ts");
const committed = join(root, "src", "crypto", "wasm", "sha256.wasm");

/** Compiles the source into `out`; throws if asc fails. */
function build(out) {
  const asc = join(root, "node_modules", "assemblyscript", "bin", "asc.js");
  const args = [
    asc,
    source,
    "--outFile", out,
    "-O3",
    "--runtime", "stub",
    "--noAssert",
    "--enable", "simd",
    // 32 bytes of state and the 64 KiB input area: two pages, never grown.
    "--initialMemory", "2",
    "--maximumMemory", "2",
  ];
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) throw new Error(`asc exited with ${result.status ?? result.signal}`);
}

if (process.argv[2] === "--check") {
  const dir = mkdtempSync(join(tmpdir(), "build-wasm-"));
  try {
    const out = join(dir, "sha256.wasm");
    build(out);
    if (!readFileSync(out).equals(readFileSync(committed))) {
      console.error(`${committed} does not match ${source}: run pnpm build:wasm and commit the result`);
      process.exit(1);
    }
    console.log(`${committed} matches its source`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  const out = resolve(process.argv[2] ?? committed);
  build(out);
  console.log(`wrote ${out}`);
}
