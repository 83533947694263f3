/**
 * Benchmark: images of several layers pushed and pulled with skopeo (median of BENCH_RUNS,
 * default 3, a fresh server each run), for r2-registry (`pnpm dev`: workerd + local R2) and
 * distribution 2.8 (filesystem); the R2 operations (class A and B) one push and one pull cost; and
 * the most R2 operations one request of each type made.
 * Two images: the 4-layer 67 MB one, whose push (≤ ×2.5 distribution's) and pull (≤ ×1.5)
 * are targets, and a ~200 MB one of 8 layers.
 *
 * Run: pnpm bench multi-layer
 */
import { createReadStream, statSync } from "node:fs";
import { join } from "node:path";
import { buildImage, seededBytes, writeOciLayout } from "../test/e2e/lib/oci-image.ts";
import { makeTempDir, removeTempDir } from "../test/e2e/lib/processes.ts";
import { mib } from "./memory.ts";
import { median, ratio, table } from "./lib.ts";
import { targetRow, times } from "./targets.ts";
import { streamUpload } from "./http-stream.ts";
import { startBaselineWorker } from "./streaming-floor.ts";
import { measureTransfers, rate, type MaxOperations, type Transfers } from "./transfer.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const IMAGES = [
  { layerMb: [40, 15, 8, 4], targets: { push: 2.5, pull: 1.5 } },
  { layerMb: [80, 50, 30, 20, 10, 5, 3, 2] },
];

/**
 * The floor of a push under the local stack: every blob of the image (config and layers) `PUT`
 * one after another into the minimal Worker (`bench/baseline-worker`: one `bucket.put` of a
 * Content-Length body each, no hashing, no sessions, no checks), as skopeo sends them one after
 * another, one request each. Seconds per run, a fresh Worker each run.
 */
async function pushFloor(files: string[], runs: number): Promise<number[]> {
  const seconds: number[] = [];
  for (let run = 0; run < runs; run++) {
    const worker = await startBaselineWorker();
    try {
      const began = performance.now();
      for (const [i, file] of files.entries()) {
        const headers = { "content-type": "application/octet-stream", "content-length": String(statSync(file).size) };
        const put = await streamUpload("PUT", `${worker.url}/object-${i}`, headers, createReadStream(file, { highWaterMark: 2 ** 20 }));
        if (put.status !== 201) throw new Error(`baseline PUT /object-${i}: ${put.status} ${put.body}`);
      }
      seconds.push((performance.now() - began) / 1000);
    } finally {
      await worker.stop();
    }
  }
  return seconds;
}

/** The files of an OCI layout's blobs, by digest. */
function blobFiles(layout: string, digests: string[]): string[] {
  return digests.map((digest) => join(layout, "blobs", ...digest.split(":")));
}

/** Writes an image of incompressible layers of these sizes as an OCI layout; answers its bytes and its blobs' digests. */
function writeImage(layerMb: number[], layout: string): { bytes: number; blobs: string[] } {
  const image = buildImage({
    layers: layerMb.map((mb, i) => ({ files: [{ path: `data/layer-${i}.bin`, content: seededBytes(`bench-multi-${layerMb.length}-${i}`, mb * 1e6) }] })),
    architecture: "amd64",
  });
  writeOciLayout(layout, [{ tag: "v1", artifact: image }]);
  const bytes = image.layers.reduce((sum, l) => sum + l.size, 0) + image.config.size + image.manifest.size;
  return { bytes, blobs: [image.config.digest, ...image.layers.map((l) => l.digest)] };
}

function print(title: string, bytes: number, ours: Transfers, theirs: Transfers): void {
  table(`${title}, median of ${RUNS} runs`, ["", "r2-registry", "distribution 2.8", "ratio"], [
    ["skopeo push", rate(ours.push, bytes), rate(theirs.push, bytes), ratio(median(ours.push), median(theirs.push))],
    ["skopeo pull", rate(ours.pull, bytes), rate(theirs.pull, bytes), ratio(median(ours.pull), median(theirs.pull))],
    ["peak RSS during the push", mib(median(ours.pushMemory)), mib(median(theirs.pushMemory)), ratio(median(ours.pushMemory), median(theirs.pushMemory))],
  ]);
  const ops = ours.ops!;
  table(`R2 operations, ${title} (r2-registry on Cloudflare bills these)`, ["", "requests", "class A", "class B", "free"], [
    ["one skopeo push", ops.push.requests, ops.push.classA, ops.push.classB, ops.push.free],
    ["one skopeo pull", ops.pull.requests, ops.pull.classA, ops.pull.classB, ops.pull.free],
  ]);
}

/** The most R2 operations one request of each type made, over the counted push and pull of each image. */
function printMaxOperations(max: Map<string, MaxOperations>): void {
  const rows = [...max.entries()].sort(([a], [b]) => a.split(" ")[1]!.localeCompare(b.split(" ")[1]!) || a.localeCompare(b));
  table(
    "R2 operations per request type: the most one request made, in the counted push and pull of each image (LOG_R2_OPERATIONS; a pull's background copy included)",
    ["request type", "requests", "max class A", "max class B", "max total"],
    rows.map(([type, m]) => [type, m.requests, m.classA, m.classB, m.total]),
  );
}

const maxOps = new Map<string, MaxOperations>();
const work = makeTempDir("bench-multi");
try {
  for (const [i, { layerMb, targets }] of IMAGES.entries()) {
    const layout = join(work, `layout-${i}`);
    const { bytes, blobs } = writeImage(layerMb, layout);
    const title = `${(bytes / 1e6).toFixed(0)} MB image of ${layerMb.length} layers`;
    console.log(`pushing and pulling a ${title}…`);
    const { ours, theirs } = await measureTransfers(layout, "v1", RUNS, join(work, `run-${i}`));
    print(title, bytes, ours, theirs);
    for (const [type, m] of ours.maxOps ?? []) {
      const seen = maxOps.get(type);
      maxOps.set(type, seen ? { classA: Math.max(seen.classA, m.classA), classB: Math.max(seen.classB, m.classB), total: Math.max(seen.total, m.total), requests: seen.requests + m.requests } : m);
    }
    if (targets) {
      const floor = await pushFloor(blobFiles(layout, blobs), RUNS);
      table(`the floor of a push, ${title}: its ${blobs.length} blobs PUT one after another into the minimal Worker (median of ${RUNS})`, ["", "time", "÷ distribution's push", "r2-registry's push ÷ floor"], [
        ["one bucket.put per blob, nothing else", `${median(floor).toFixed(2)} s`, times(median(floor) / median(theirs.push)), times(median(ours.push) / median(floor))],
      ]);
      table(`targets of the issue, ${title}`, ["", "measured", "target", ""], [
        targetRow("skopeo push (ours) / distribution's skopeo push", median(ours.push) / median(theirs.push), targets.push, times),
        targetRow("skopeo pull (ours) / distribution's skopeo pull", median(ours.pull) / median(theirs.pull), targets.pull, times),
      ]);
    }
    removeTempDir(layout);
  }
  printMaxOperations(maxOps);
} finally {
  removeTempDir(work);
}
