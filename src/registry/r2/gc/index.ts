import type { R2Blobs } from "../blobs";
import type { R2Fence } from "../fence";
import type { R2Links } from "../links";
import { removeAbandonedUploads, type AbandonedReport } from "./abandoned";
import { R2Collector, type CollectMode, type CollectOptions, type CollectReport } from "./collect";
import { sweepOrphans, type OrphanReport } from "./orphans";

export type { CollectMode, CollectOptions, CollectReport } from "./collect";

/** A registry-wide run: every repository, then abandoned uploads and unused upload bytes. */
export interface CollectAllOptions extends CollectOptions {
  /** Uploads untouched for this many milliseconds are abandoned. */
  uploadMaxAgeMs: number;
}

export interface CollectAllReport {
  mode: CollectMode;
  dryRun: boolean;
  repositories: CollectReport[];
  uploads: AbandonedReport;
  orphans: OrphanReport;
  /** Bytes freed in all. */
  bytes: number;
}

/**
 * Garbage collection of the whole bucket, repository by repository (each as safe under
 * concurrent pushes as a single collection), then the registry-wide hygiene.
 *
 * @example
 * const report = await collectAll(parts, { mode: "unreferenced", graceMs: 3_600_000, uploadMaxAgeMs: 86_400_000 });
 */
export async function collectAll(
  parts: { bucket: R2Bucket; blobs: R2Blobs; links: R2Links; fence: R2Fence; repositories: () => AsyncIterable<string> },
  options: CollectAllOptions,
): Promise<CollectAllReport> {
  const collector = new R2Collector(parts.bucket, parts.blobs, parts.links, parts.fence);
  const repositories: CollectReport[] = [];
  for await (const name of parts.repositories()) repositories.push(await collector.collect(name, options));
  const dryRun = options.dryRun === true;
  const uploads = await removeAbandonedUploads(parts.bucket, parts.repositories(), options.uploadMaxAgeMs, { dryRun });
  const orphans = await sweepOrphans(parts.bucket, parts.links, parts.repositories, options.graceMs, { dryRun });
  const bytes = repositories.reduce((sum, r) => sum + r.bytes, 0) + orphans.bytes;
  return { mode: options.mode, dryRun, repositories, uploads, orphans, bytes };
}

export { R2Collector };
