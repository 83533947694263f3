/**
 * `pnpm bench`: runs every benchmark in turn and prints its figures. Pick some with
 * `pnpm bench listing`.
 */
import { spawnSync } from "node:child_process";
import { cpus, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const version = (command: string, ...args: string[]) =>
  spawnSync(command, args, { encoding: "utf8", cwd: join(here, "..") }).stdout?.trim().split("\n")[0] ?? "?";
console.log("machine:");
console.log(`  ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}`);
console.log(`  node ${process.version}, ${version("npx", "wrangler", "--version")}, ${version("skopeo", "--version")}`);
console.log(`  distribution: ${version("/usr/bin/docker-registry", "--version")}, ${version("wrk", "--version") || "wrk"}`);
const all = ["requests", "listing", "multi-layer", "big-layer", "baseline", "sha256"];
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : all;
for (const name of chosen) {
  if (!all.includes(name)) throw new Error(`unknown benchmark ${name}; have: ${all.join(", ")}`);
  console.log(`\n=== bench: ${name}`);
  const result = spawnSync(process.execPath, [join(here, `${name}.ts`)], { stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
