import { RegistryError } from "../../../errors";
import type { Budget } from "../budget";
import { COPY_ON_MOUNT_LIMIT } from "../blobs";
import { keys, lastSegment } from "../keys";
import type { Collection } from "./collect";
import { liveBlobs, reachable, refresh, rootsOf, type RepositoryGraph } from "./graph";

/** A blob nothing referenced when the collection marked. */
export interface Candidate {
  digest: string;
  /** The blob key's etag and upload time when marked: a key written since is spared. */
  etag: string;
  uploaded: number;
  kind: "bytes" | "pointer" | "symlink";
  dataKey: string;
  size: number;
}

/** Keys per delete call (R2's limit). */
const BATCH = 1000;

/**
 * R2 calls a sweep step makes whatever it deletes: the lease (read, write, release), the intents
 * (a listing, a few reads, a delete), the blob listing, a delete batch with its renewal, margin.
 * Re-listing the manifests adds one per 1,000 keys.
 */
const STEP_CALLS = 12;

/** Calls one candidate may cost: who shares its bytes (and a tombstone for big ones), unlinking, freeing upload bytes. */
function costOf(candidate: Candidate): number {
  if (candidate.kind === "pointer") return 7;
  if (candidate.kind === "symlink") return 2;
  return candidate.size > COPY_ON_MOUNT_LIMIT ? 4 : 2;
}

function tooBig(name: string, calls: number): RegistryError {
  return new RegistryError(
    "UNKNOWN",
    `a sweep of ${name} needs about ${calls} R2 calls in one invocation, more than the collection's budget: raise GC_MAX_OPERATIONS`,
    { status: 500 },
  );
}

/** Each candidate's blob key as it is now (etag and upload time), from a listing of the range the chunk spans. */
async function currentKeys(bucket: R2Bucket, name: string, chunk: Candidate[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  if (chunk.length === 0) return found;
  const prefix = keys.blobsPrefix(name);
  const last = prefix + chunk[chunk.length - 1]!.digest;
  // A prefix of the first key sorts before it.
  let startAfter = (prefix + chunk[0]!.digest).slice(0, -1);
  for (;;) {
    const page = await bucket.list({ prefix, startAfter, limit: BATCH });
    for (const object of page.objects) {
      if (object.key > last) return found;
      found.set(lastSegment(object.key), `${object.etag}@${object.uploaded.getTime()}`);
      startAfter = object.key;
    }
    if (!page.truncated) return found;
  }
}

/** The keys of manifests to delete, tag keys first and the digest key last (as a manifest delete does). */
function manifestKeys(graph: RepositoryGraph, digests: string[]): string[] {
  const out: string[] = [];
  for (const digest of digests) {
    const node = graph.manifests.get(digest)!;
    out.push(...node.keys.filter((k) => lastSegment(k) !== digest), ...node.keys.filter((k) => lastSegment(k) === digest));
  }
  return out;
}

function candidatesOf(collection: Collection, from: number, budgetCalls: number): Candidate[] {
  const chunk: Candidate[] = [];
  let left = budgetCalls;
  for (let i = from; i < collection.state.candidates.length && chunk.length < BATCH; i++) {
    const [digest, etag, uploaded, kind, dataKey, size] = collection.state.candidates[i]!;
    const candidate = { digest, etag, uploaded, kind, dataKey, size };
    if (costOf(candidate) > left) break;
    left -= costOf(candidate);
    chunk.push(candidate);
  }
  return chunk;
}

/**
 * One step of a sweep, if the budget allows one: the next chunk of candidates (as many as the
 * budget allows, at most 1,000) is checked against other repositories' mounts, then, under the
 * sweep lease, the manifests are listed again (reading only what changed) and whatever pushes
 * announced or stored since the marking is spared; manifests nothing reaches any more are deleted
 * first, then the chunk's blobs still unreferenced and unchanged. False when no step fits.
 */
export async function sweepStep(collection: Collection, work: Budget): Promise<boolean> {
  const { state, graph, report, parts } = collection;
  const { links, fence, blobs } = parts;
  const bucket = work.bucket;
  const name = state.name;
  const base = STEP_CALLS + Math.ceil(graph.manifestKeys.size / BATCH);
  // A step that would not fit even at the start of an invocation (where a registry-wide run
  // gives its repositories about three quarters of the budget) can never be made.
  if (base + 2 > Math.floor(work.whole * 0.7) - 4) throw tooBig(name, base + 2);
  if (!work.allows(base + 2)) return false;
  const chunk = candidatesOf(collection, state.next, work.left - base);
  if (chunk.length === 0 && state.manifestsSwept) return false;

  // Bytes other repositories' symlinks use stay. Their tombstones make concurrent mounts back off
  // until the step is over.
  const buried: string[] = [];
  try {
    const kept = new Set<string>();
    const shared: Candidate[] = [];
    for (const candidate of chunk.filter((c) => c.kind === "bytes")) {
      // Only bytes larger than COPY_ON_MOUNT_LIMIT get new symlinks (smaller ones are copied).
      if (!state.dryRun && candidate.size > COPY_ON_MOUNT_LIMIT) {
        await links.bury(candidate.dataKey);
        buried.push(candidate.dataKey);
      }
      if ((await links.users(candidate.digest, { dataKey: candidate.dataKey, holder: name })).length > 0) {
        kept.add(candidate.digest);
        shared.push(candidate);
      }
    }
    let doomed = chunk.filter((c) => !kept.has(c.digest));

    if (state.dryRun) {
      if (!state.manifestsSwept) {
        const live = reachable(graph, rootsOf(graph));
        for (const node of graph.manifests.values()) {
          if (live.has(node.digest) || node.keys.length === 0) continue;
          report.manifests.push({ digest: node.digest, size: node.size, tags: node.tags });
          report.bytes += node.size * Math.max(1, node.keys.length);
        }
        state.manifestsSwept = true;
      }
    } else if (doomed.length === 0 && nothingToSweep(graph)) {
      // Nothing to delete: no sweep lease (a write of the repository's state key, which R2 takes
      // once a second; collections that find nothing are the common case).
      state.manifestsSwept = true;
    } else {
      const lease = await fence.sweep(name);
      try {
        // Spare what pushes in progress announced and what was stored since the marking.
        const announced = await fence.announced(name);
        await refresh(bucket, graph);
        const live = reachable(graph, [...rootsOf(graph), ...announced]);
        const used = liveBlobs(graph, live);
        for (const digest of announced) used.add(digest);
        const gone = [...graph.manifests.values()].filter((n) => !live.has(n.digest) && n.keys.length > 0).map((n) => n.digest);
        const goneSet = new Set(gone);
        const present = new Set([...graph.manifestKeys.values()].map((entry) => entry.digest));
        // Entries of deleted referrers, and of referrers that are not stored at all.
        const entries = graph.referrerEntries.filter((e) => goneSet.has(e.referrer) || (!present.has(e.referrer) && !announced.has(e.referrer)));
        const doomedKeys = [...manifestKeys(graph, gone), ...entries.map((e) => e.key)];
        // Deleting all of them comes first; if the budget does not stretch that far, the blobs wait.
        const batches = Math.max(0, Math.floor((work.left - 4) / 2));
        const allManifests = doomedKeys.length <= batches * BATCH;
        const deleted = new Set<string>();
        for (let i = 0; i < doomedKeys.length && i < batches * BATCH; i += BATCH) {
          const batch = doomedKeys.slice(i, i + BATCH);
          await lease.renew();
          await bucket.delete(batch);
          for (const key of batch) deleted.add(key);
        }
        for (const digest of gone) {
          const node = graph.manifests.get(digest)!;
          if (!node.keys.every((k) => deleted.has(k))) continue;
          report.manifests.push({ digest, size: node.size, tags: node.tags });
          report.bytes += node.size * Math.max(1, node.keys.length);
        }
        graph.referrerEntries = graph.referrerEntries.filter((e) => !deleted.has(e.key));
        for (const key of deleted) graph.manifestKeys.delete(key);
        state.manifestsSwept = allManifests;
        if (allManifests) {
          // R2's etag is a hash of the bytes: the upload time tells a key written again since.
          const current = await currentKeys(bucket, name, chunk);
          doomed = doomed.filter((c) => !used.has(c.digest) && current.get(c.digest) === `${c.etag}@${c.uploaded}`);
          const blobKeys = doomed.map((c) => keys.blob(name, c.digest));
          for (let i = 0; i < blobKeys.length; i += BATCH) {
            await lease.renew();
            await bucket.delete(blobKeys.slice(i, i + BATCH));
          }
          for (const c of doomed) if (c.kind !== "bytes") await links.remove(c.digest, name);
        }
      } finally {
        await lease.release().catch(() => undefined);
      }
      // Manifests left to delete: the chunk waits for the next step.
      if (!state.manifestsSwept) return true;
    }

    for (const candidate of doomed) {
      report.blobs.push({ digest: candidate.digest, size: candidate.size, kind: candidate.kind });
      if (candidate.kind === "bytes") report.bytes += candidate.size;
      if (candidate.kind !== "pointer") continue;
      // An assembled upload's bytes are freed once no repository points at them any more.
      const freed = state.dryRun
        ? (await links.users(candidate.digest, { dataKey: candidate.dataKey }, name)).length === 0
        : await blobs.release(candidate.digest, candidate.dataKey);
      if (freed) report.bytes += candidate.size;
    }
    for (const candidate of shared) report.shared.push({ digest: candidate.digest, size: candidate.size });
    state.next += chunk.length;
    return true;
  } finally {
    for (const dataKey of buried) await links.unbury(dataKey).catch(() => undefined);
  }
}

/** True when every stored manifest is live and every referrers entry names a stored manifest. */
function nothingToSweep(graph: RepositoryGraph): boolean {
  const live = reachable(graph, rootsOf(graph));
  if ([...graph.manifests.values()].some((n) => !live.has(n.digest) && n.keys.length > 0)) return false;
  const present = new Set([...graph.manifestKeys.values()].map((entry) => entry.digest));
  return graph.referrerEntries.every((entry) => present.has(entry.referrer));
}
