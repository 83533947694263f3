/**
 * `pnpm bench`: runs every benchmark in turn and prints its figures. Pick some with
 * `pnpm bench listing`.
 */
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const all = ["listing", "big-layer"];
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : all;
for (const name of chosen) {
  if (!all.includes(name)) throw new Error(`unknown benchmark ${name}; have: ${all.join(", ")}`);
  console.log(`\n=== bench: ${name}`);
  const result = spawnSync(process.execPath, [join(here, `${name}.ts`)], { stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
