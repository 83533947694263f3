/**
 * Benchmark: a ~200 MB image of 8 layers pushed and pulled with skopeo (median of BENCH_RUNS,
 * default 3, a fresh server each run), for r2-registry (`pnpm dev`: workerd + local R2) and
 * distribution 2.8 (filesystem); and the R2 operations (class A and B) one push and one pull cost.
 *
 * Run: pnpm bench multi-layer
 */
import { join } from "node:path";
import { buildImage, seededBytes, writeOciLayout } from "../test/e2e/lib/oci-image.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { mib } from "./memory.ts";
import { median, ratio, table } from "./lib.ts";
import { measureTransfers, rate } from "./transfer.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const LAYER_MB = [80, 50, 30, 20, 10, 5, 3, 2];

const work = makeTempDir("bench-multi");
try {
  console.log(`building a ${LAYER_MB.reduce((a, b) => a + b, 0)} MB image of ${LAYER_MB.length} layers…`);
  const image = buildImage({
    layers: LAYER_MB.map((mb, i) => ({ files: [{ path: `data/layer-${i}.bin`, content: seededBytes(`bench-multi-${i}`, mb * 1e6) }] })),
    architecture: "amd64",
  });
  const bytes = image.layers.reduce((sum, l) => sum + l.size, 0) + image.config.size + image.manifest.size;
  const layout = join(work, "layout");
  writeOciLayout(layout, [{ tag: "v1", artifact: image }]);
  const { ours, theirs } = await measureTransfers(layout, "v1", RUNS, work);
  table(`${(bytes / 1e6).toFixed(0)} MB image of ${LAYER_MB.length} layers, median of ${RUNS} runs`, ["", "r2-registry", "distribution 2.8", "ratio"], [
    ["skopeo push", rate(ours.push, bytes), rate(theirs.push, bytes), ratio(median(ours.push), median(theirs.push))],
    ["skopeo pull", rate(ours.pull, bytes), rate(theirs.pull, bytes), ratio(median(ours.pull), median(theirs.pull))],
    ["peak RSS during the push", mib(median(ours.pushMemory)), mib(median(theirs.pushMemory)), ratio(median(ours.pushMemory), median(theirs.pushMemory))],
  ]);
  const ops = ours.ops!;
  table("R2 operations (r2-registry on Cloudflare bills these)", ["", "requests", "class A", "class B", "free"], [
    ["one skopeo push", ops.push.requests, ops.push.classA, ops.push.classB, ops.push.free],
    ["one skopeo pull", ops.pull.requests, ops.pull.classA, ops.pull.classB, ops.pull.free],
  ]);
} finally {
  removeTempDir(work);
}
