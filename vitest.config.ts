import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// Two projects: `worker` runs inside workerd with a local R2 bucket (miniflare), `e2e` runs in
// Node and drives real clients (skopeo, podman, docker) against `pnpm dev`.
export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./test/wrangler.test.toml", environment: "dev" },
            // GC_SEED=<n> reruns the garbage collection concurrency test with that seed.
            miniflare: { bindings: { GC_SEED: process.env.GC_SEED ?? "" } },
          }),
        ],
        test: { name: "worker", include: ["test/worker/**/*.test.ts"] },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
