import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// `worker` runs inside workerd with a local R2 bucket (miniflare), `e2e` runs in Node and drives
// real clients (skopeo, podman, docker) against `pnpm dev`. `robustness` and `robustness-e2e` are
// the same two kinds for the robustness suite (`pnpm test:robustness`).
const workerPool = () =>
  cloudflareTest({
    wrangler: { configPath: "./test/wrangler.test.toml", environment: "dev" },
    // GC_SEED=<n> reruns the garbage collection concurrency test with that seed.
    miniflare: { bindings: { GC_SEED: process.env.GC_SEED ?? "" } },
  });
const node = { environment: "node", testTimeout: 300_000, hookTimeout: 300_000, fileParallelism: false } as const;

export default defineConfig({
  test: {
    projects: [
      { plugins: [workerPool()], test: { name: "worker", include: ["test/worker/**/*.test.ts"], sequence: { groupOrder: 0 } } },
      { test: { name: "e2e", include: ["test/e2e/**/*.test.ts"], ...node, sequence: { groupOrder: 0 } } },
      { plugins: [workerPool()], test: { name: "robustness", include: ["test/robustness/*.test.ts"], sequence: { groupOrder: 0 } } },
      // After the others: its fuzzer, eight concurrent clients and SIGKILL mid-push should not
      // share the two cores with the end-to-end suite's multi-GiB pushes.
      { test: { name: "robustness-e2e", include: ["test/robustness/e2e/**/*.test.ts"], ...node, sequence: { groupOrder: 1 } } },
    ],
  },
});
