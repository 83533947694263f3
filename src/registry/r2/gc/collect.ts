import type { R2Blobs } from "../blobs";
import { COPY_ON_MOUNT_LIMIT, holding } from "../blobs";
import type { R2Fence, SweepLease } from "../fence";
import { keys, lastSegment, listAll } from "../keys";
import type { R2Links } from "../links";
import { addManifests, listManifestKeys, loadGraph, reachable, reindex, type ManifestKey, type RepositoryGraph } from "./graph";

/**
 * `unreferenced`: delete blobs no manifest of the repository references. `untagged`: first delete
 * manifests no tag, index or live subject reaches, then the blobs nothing live references.
 */
export type CollectMode = "unreferenced" | "untagged";

export interface CollectOptions {
  mode: CollectMode;
  /** Report what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** Manifests and blobs written less than this many milliseconds ago are kept. */
  graceMs: number;
}

/** What a collection of one repository deleted (or, in a dry run, would delete). */
export interface CollectReport {
  name: string;
  mode: CollectMode;
  dryRun: boolean;
  manifests: { digest: string; size: number; tags: string[] }[];
  blobs: { digest: string; size: number; kind: "bytes" | "pointer" | "symlink" }[];
  /** Blobs no manifest here references, kept because other repositories' mounts use their bytes. */
  shared: { digest: string; size: number }[];
  /** Bytes the deletions free in the bucket. */
  bytes: number;
}

/** Blob keys are deleted this many at a time (R2's limit for one delete call). */
const BATCH = 1000;

interface Candidate {
  digest: string;
  object: R2Object;
  kind: "bytes" | "pointer" | "symlink";
  dataKey: string;
  size: number;
}

async function listBlobs(bucket: R2Bucket, name: string): Promise<Map<string, R2Object>> {
  const found = new Map<string, R2Object>();
  for await (const object of listAll(bucket, { prefix: keys.blobsPrefix(name), include: ["customMetadata"] })) {
    found.set(lastSegment(object.key), object);
  }
  return found;
}

function liveBlobs(graph: RepositoryGraph, live: Set<string>): Set<string> {
  const blobs = new Set<string>();
  for (const digest of live) for (const blob of graph.manifests.get(digest)?.blobs ?? []) blobs.add(blob);
  return blobs;
}

/** The digests a collection starts from: every manifest, or the tagged ones; and recent ones. */
function roots(graph: RepositoryGraph, mode: CollectMode, cutoff: number): Set<string> {
  const found = new Set<string>();
  for (const node of graph.manifests.values()) {
    if (mode === "unreferenced" || node.tags.length > 0 || node.uploaded > cutoff) found.add(node.digest);
  }
  return found;
}

/** Re-reads which keys hold which manifests, reading the bodies of manifests not seen before. */
async function refresh(bucket: R2Bucket, name: string, graph: RepositoryGraph): Promise<ManifestKey[]> {
  const listed = await listManifestKeys(bucket, name);
  const changed = [...listed.values()].filter((entry) => graph.manifestKeys.get(entry.key)?.etag !== entry.etag);
  await addManifests(bucket, name, graph, new Map(changed.map((entry) => [entry.key, entry])));
  reindex(graph, listed);
  return changed;
}

/** True when referrers entries name manifests that are not stored (a sweep removes them). */
function danglingReferrers(graph: RepositoryGraph): boolean {
  const present = new Set([...graph.manifestKeys.values()].map((entry) => entry.digest));
  return graph.referrerEntries.some((entry) => !present.has(entry.referrer));
}

/**
 * Garbage collection of one repository. It reads only that repository's keys (and, for blobs
 * whose bytes are shared, who shares them). Safe under concurrent pushes through `R2Fence`:
 * it decides what to delete, then takes the sweep lease and spares whatever pushes in progress
 * announced or stored since, then deletes.
 *
 * @example
 * const report = await collector.collect("team/app", { mode: "untagged", graceMs: 3_600_000 });
 */
export class R2Collector {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
    private readonly links: R2Links,
    private readonly fence: R2Fence,
  ) {}

  async collect(name: string, options: CollectOptions): Promise<CollectReport> {
    const dryRun = options.dryRun === true;
    const cutoff = Date.now() - options.graceMs;
    const graph = await loadGraph(this.bucket, name);
    const start = roots(graph, options.mode, cutoff);
    let live = reachable(graph, start);
    let blobKeys = await listBlobs(this.bucket, name);
    let used = liveBlobs(graph, live);
    let candidates: Candidate[] = [];
    for (const [digest, object] of blobKeys) {
      if (used.has(digest) || object.uploaded.getTime() > cutoff) continue;
      const held = holding(object, name, digest);
      const size = held.kind === "pointer" ? Number(object.customMetadata?.size ?? 0) : object.size;
      candidates.push({ digest, object, kind: held.kind, dataKey: held.dataKey, size });
    }

    const report: CollectReport = { name, mode: options.mode, dryRun, manifests: [], blobs: [], shared: [], bytes: 0 };
    // Bytes that other repositories' symlinks use stay. Their tombstones make concurrent mounts
    // back off until the sweep is over.
    const buried: string[] = [];
    try {
      const kept = new Set<string>();
      for (const candidate of candidates.filter((c) => c.kind === "bytes")) {
        // Only bytes larger than COPY_ON_MOUNT_LIMIT get new symlinks (smaller ones are copied).
        if (!dryRun && candidate.size > COPY_ON_MOUNT_LIMIT) {
          await this.links.bury(candidate.dataKey);
          buried.push(candidate.dataKey);
        }
        if ((await this.links.users(candidate.digest, { dataKey: candidate.dataKey, holder: name })).length > 0) {
          kept.add(candidate.digest);
          report.shared.push({ digest: candidate.digest, size: candidate.size });
        }
      }
      candidates = candidates.filter((c) => !kept.has(c.digest));

      let doomed: string[];
      if (dryRun) {
        doomed = [...graph.manifests.keys()].filter((d) => !live.has(d));
      } else if (candidates.length === 0 && (options.mode === "unreferenced" || [...graph.manifests.keys()].every((d) => live.has(d))) && !danglingReferrers(graph)) {
        // Nothing to delete: no sweep lease (a write of the repository's state key, which R2
        // takes once a second; collections that find nothing are the common case).
        doomed = [];
      } else {
        const lease = await this.fence.sweep(name);
        try {
          // Spare what pushes in progress announced and what was stored since the listing above.
          const announced = await this.fence.announced(name);
          const changed = await refresh(this.bucket, name, graph);
          const more = [...start, ...announced, ...changed.map((entry) => entry.digest)];
          if (options.mode === "unreferenced") more.push(...graph.manifests.keys());
          live = reachable(graph, more);
          used = liveBlobs(graph, live);
          for (const digest of announced) used.add(digest);
          blobKeys = await listBlobs(this.bucket, name);
          candidates = candidates.filter((c) => !used.has(c.digest) && blobKeys.get(c.digest)?.etag === c.object.etag);
          doomed = [...graph.manifests.values()].filter((n) => !live.has(n.digest) && n.keys.length > 0).map((n) => n.digest);
          await this.sweep(name, graph, doomed, candidates, announced, lease);
        } finally {
          await lease.release().catch(() => undefined);
        }
      }

      for (const digest of doomed) {
        const node = graph.manifests.get(digest)!;
        report.manifests.push({ digest, size: node.size, tags: node.tags });
        report.bytes += node.size * Math.max(1, node.keys.length);
      }
      for (const candidate of candidates) {
        report.blobs.push({ digest: candidate.digest, size: candidate.size, kind: candidate.kind });
        if (candidate.kind === "bytes") report.bytes += candidate.size;
        if (candidate.kind !== "pointer") continue;
        // An assembled upload's bytes are freed once no repository points at them any more.
        const freed = dryRun
          ? (await this.links.users(candidate.digest, { dataKey: candidate.dataKey }, name)).length === 0
          : await this.blobs.release(candidate.digest, candidate.dataKey);
        if (freed) report.bytes += candidate.size;
      }
    } finally {
      for (const dataKey of buried) await this.links.unbury(dataKey).catch(() => undefined);
    }
    return report;
  }

  /** Deletes doomed manifests (with their referrers entries) and blobs, renewing the lease as it goes. */
  private async sweep(
    name: string,
    graph: RepositoryGraph,
    doomed: string[],
    candidates: Candidate[],
    announced: Set<string>,
    lease: SweepLease,
  ): Promise<void> {
    const gone = new Set(doomed);
    const present = new Set([...graph.manifestKeys.values()].map((entry) => entry.digest));
    const doomedKeys: string[] = [];
    for (const digest of doomed) {
      const node = graph.manifests.get(digest)!;
      // Tag keys first, the digest key last, as a manifest delete does.
      doomedKeys.push(...node.keys.filter((k) => lastSegment(k) !== digest), ...node.keys.filter((k) => lastSegment(k) === digest));
    }
    for (const entry of graph.referrerEntries) {
      // Entries of deleted referrers, and of referrers that are not stored at all.
      if (gone.has(entry.referrer) || (!present.has(entry.referrer) && !announced.has(entry.referrer))) doomedKeys.push(entry.key);
    }
    doomedKeys.push(...candidates.map((c) => c.object.key));
    for (let i = 0; i < doomedKeys.length; i += BATCH) {
      await lease.renew();
      await this.bucket.delete(doomedKeys.slice(i, i + BATCH));
    }
    for (const candidate of candidates) if (candidate.kind !== "bytes") await this.links.remove(candidate.digest, name);
  }
}
