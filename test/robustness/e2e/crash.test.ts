/**
 * The dev server killed with SIGKILL (wrangler, workerd and all) in the middle of pushes, then
 * started again on the same state directory: every image completed before the kill is intact,
 * and the interrupted pushes succeed when retried.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "../../e2e/lib/clients.ts";
import { startDevServer, type RunningDevServer } from "../../e2e/lib/dev-server.ts";
import { writeOciLayout, type BuiltImage } from "../../e2e/lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "../../e2e/lib/processes.ts";
import { pullAndVerify, push, sharedLayerImages } from "./lib.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Bytes of the files under a directory. */
function dirSize(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    try {
      total += statSync(join(entry.parentPath, entry.name)).size;
    } catch {
      // Removed while we looked.
    }
  }
  return total;
}

/** Kills a process group outright, as a crash or an OOM kill would. */
function killHard(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

describe("a crash in the middle of pushes", () => {
  let work: string | undefined;
  let server: RunningDevServer | undefined;
  let images: BuiltImage[];
  let layout: string;
  const credentials = { username: "crash-user", password: "crash-password-0123" };

  beforeAll(async () => {
    work = makeTempDir("robust-crash");
    // Images 2 and 3 have 40 MB layers of their own, so their pushes take a while.
    images = [...sharedLayerImages("crash", 2), ...sharedLayerImages("crash-big", 2, 40 * 1024 * 1024)];
    layout = join(work, "layout");
    writeOciLayout(layout, images.map((artifact, i) => ({ tag: `v${i}`, artifact })));
  });
  afterAll(() => cleanupAll([() => server?.stop(), () => removeTempDir(work)]));

  it("keeps completed images and lets interrupted pushes finish after a restart", async () => {
    const stateDir = join(work!, "state");
    server = await startDevServer({ stateDir, ...credentials });
    const skopeo = new Skopeo(join(work!, "skopeo"));
    for (const i of [0, 1]) await push(skopeo, server, layout, `v${i}`, `crash/app-${i}`);

    // Two big pushes at once; the server dies under them.
    const inFlight = [2, 3].map((i) => push(new Skopeo(join(work!, `skopeo-${i}`)), server!, layout, `v${i}`, `crash/big-${i}`).then(
      () => "completed",
      () => "failed",
    ));
    // Pull the plug once the big uploads are under way: when the local bucket on disk has grown
    // by a part (16 MiB) or more, but before both 40 MB layers are in.
    const baseline = dirSize(stateDir);
    for (let i = 0; i < 600 && dirSize(stateDir) - baseline < 20 * 1024 * 1024; i++) await sleep(50);
    const grown = dirSize(stateDir) - baseline;
    killHard(server.process.pid!);
    expect(grown, "the big uploads had not started when the server was killed").toBeGreaterThanOrEqual(20 * 1024 * 1024);
    const outcomes = await Promise.all(inFlight);
    expect(outcomes).toContain("failed");
    await server.stop();

    server = await startDevServer({ stateDir, ...credentials });
    for (const i of [0, 1]) await pullAndVerify(skopeo, server, `crash/app-${i}`, `v${i}`, images[i]!, work!);
    // Retried, the interrupted pushes complete.
    for (const i of [2, 3]) await push(skopeo, server, layout, `v${i}`, `crash/big-${i}`);
    for (const i of [0, 1, 2, 3]) {
      await pullAndVerify(skopeo, server, i < 2 ? `crash/app-${i}` : `crash/big-${i}`, `v${i}`, images[i]!, work!);
    }
  });
});
