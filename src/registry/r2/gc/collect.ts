import { RegistryError } from "../../../errors";
import type { Budget } from "../budget";
import type { R2Blobs } from "../blobs";
import { COPY_ON_MOUNT_LIMIT, holding } from "../blobs";
import type { R2Fence } from "../fence";
import { keys, lastSegment } from "../keys";
import type { R2Links } from "../links";
import { loadJson, saveJson } from "../progress";
import {
  addManifestPage,
  addReferrerPage,
  emptyGraph,
  liveBlobs,
  loadGraph,
  markRoots,
  reachable,
  rootsOf,
  saveGraph,
  type RepositoryGraph,
  type SavedGraph,
} from "./graph";
import { sweepStep, type Candidate } from "./sweep";

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
  /** Continue the collection this cursor names (with the options it started with). */
  cursor?: string;
}

/** What one invocation of a collection of one repository deleted (or, in a dry run, would delete). */
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
  /** False when the invocation's budget ran out first; `next` continues it. */
  complete: boolean;
  next?: string;
}

/** A collection's progress, saved at `_gc/_collections/<id>` when an invocation stops half-way. */
export interface CollectionState {
  v: 1;
  id: string;
  name: string;
  mode: CollectMode;
  dryRun: boolean;
  /** Manifests and blobs written after this (ms since the epoch) are kept. */
  cutoff: number;
  /** Marking: manifests, then the referrers index, then blobs (candidates); then sweeping. */
  phase: "manifests" | "referrers" | "blobs" | "sweep";
  /** The last key handled in the current phase's listing. */
  after?: string;
  graph: SavedGraph;
  /** Blobs nothing referenced when marked: digest, etag, upload time, kind, data key, size; by digest. */
  candidates: [string, string, number, Candidate["kind"], string, number][];
  /** Candidates before this index are swept. */
  next: number;
  /** True once a sweep found no manifest left to delete (or, in a dry run, reported them). */
  manifestsSwept: boolean;
}

/** Calls kept back from the work to save or drop the state at the end. */
const RESERVE = 2;

function unknownCursor(name: string): RegistryError {
  return new RegistryError("UNSUPPORTED", `no garbage collection of ${name} with that cursor is under way (finished or expired); start a new one`, {
    status: 400,
  });
}

/** The work of one collection in one invocation. */
class Collection {
  readonly graph: RepositoryGraph;
  private used?: Set<string>;

  constructor(
    readonly state: CollectionState,
    readonly parts: { bucket: R2Bucket; blobs: R2Blobs; links: R2Links; fence: R2Fence },
    readonly report: CollectReport,
  ) {
    this.graph = loadGraph(state.name, state.graph);
  }

  get done(): boolean {
    return this.state.phase === "sweep" && this.state.manifestsSwept && this.state.next >= this.state.candidates.length;
  }

  /** Marks, then sweeps, until done or `work` runs out. */
  async advance(work: Budget): Promise<void> {
    const { state, graph } = this;
    const bucket = work.bucket;
    while (!this.done) {
      if (state.phase === "manifests") {
        if (!work.allows(2)) return;
        const page = await addManifestPage(bucket, graph, state.after, work.left - 1);
        state.after = page.last;
        if (page.done) [state.phase, state.after] = ["referrers", undefined];
      } else if (state.phase === "referrers") {
        if (!work.allows(1)) return;
        const page = await addReferrerPage(bucket, graph, state.after);
        state.after = page.last;
        if (page.done) {
          markRoots(graph, state.mode, state.cutoff);
          [state.phase, state.after] = ["blobs", undefined];
        }
      } else if (state.phase === "blobs") {
        if (!work.allows(1)) return;
        await this.markBlobs(bucket);
      } else if (!(await sweepStep(this, work))) {
        return;
      }
    }
  }

  /** One page of blob keys: those nothing live references and older than the cutoff are candidates. */
  private async markBlobs(bucket: R2Bucket): Promise<void> {
    const { state, graph } = this;
    this.used ??= liveBlobs(graph, reachable(graph, rootsOf(graph)));
    const prefix = keys.blobsPrefix(state.name);
    const page = await bucket.list({ prefix, limit: 1000, include: ["customMetadata"], ...(state.after ? { startAfter: state.after } : {}) });
    for (const object of page.objects) {
      state.after = object.key;
      const digest = lastSegment(object.key);
      if (this.used.has(digest) || object.uploaded.getTime() > state.cutoff) continue;
      const held = holding(object, state.name, digest);
      const size = held.kind === "pointer" ? Number(object.customMetadata?.size ?? 0) : object.size;
      state.candidates.push([digest, object.etag, object.uploaded.getTime(), held.kind, held.dataKey, size]);
    }
    if (!page.truncated) [state.phase, state.after, state.next] = ["sweep", undefined, 0];
  }

  /** The state to save, with the graph as it stands. */
  saved(): CollectionState {
    return { ...this.state, graph: saveGraph(this.graph) };
  }
}

export type { Collection };

/**
 * Garbage collection of one repository, in bounded invocations. It reads only that repository's
 * keys (and, for blobs whose bytes are shared, who shares them). It first marks (lists the
 * manifests, reading each once, the referrers index and the blobs), then sweeps in steps, each
 * under the sweep lease of `R2Fence`: re-list the manifests, spare what pushes in progress
 * announced and what was stored since the marking, delete. An invocation that runs out of budget
 * saves where it is (`next`), and the next one carries on; one interrupted at any point has
 * deleted only what its last step decided under the lease.
 *
 * @example
 * let report = await collector.collect("team/app", { mode: "untagged", graceMs: 3_600_000 }, budget);
 * while (!report.complete) report = await collector.collect("team/app", { ...options, cursor: report.next }, nextBudget);
 */
export class R2Collector {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly blobs: R2Blobs,
    private readonly links: R2Links,
    private readonly fence: R2Fence,
  ) {}

  async collect(name: string, options: CollectOptions, budget: Budget): Promise<CollectReport> {
    let state: CollectionState;
    let etag: string | undefined;
    if (options.cursor !== undefined) {
      const stored = /^[0-9a-f-]{36}$/.test(options.cursor) ? await loadJson<CollectionState>(this.bucket, keys.collection(options.cursor)) : undefined;
      if (!stored || stored.value.name !== name || stored.value.v !== 1) throw unknownCursor(name);
      [state, etag] = [stored.value, stored.etag];
    } else {
      state = {
        v: 1,
        id: crypto.randomUUID(),
        name,
        mode: options.mode,
        dryRun: options.dryRun === true,
        cutoff: Date.now() - options.graceMs,
        phase: "manifests",
        graph: saveGraph(emptyGraph(name)),
        candidates: [],
        next: 0,
        manifestsSwept: false,
      };
    }
    const report: CollectReport = { name, mode: state.mode, dryRun: state.dryRun, manifests: [], blobs: [], shared: [], bytes: 0, complete: false };
    const collection = new Collection(state, { bucket: this.bucket, blobs: this.blobs, links: this.links, fence: this.fence }, report);
    const work = budget.slice(budget.left - RESERVE);
    // Shared bytes are judged through the links index: an older bucket's is built first.
    if (await this.links.backfill(work)) await collection.advance(work);
    if (collection.done) {
      if (etag !== undefined) await this.bucket.delete(keys.collection(state.id));
      report.complete = true;
      return report;
    }
    const written = await saveJson(this.bucket, keys.collection(state.id), collection.saved(), etag);
    if (written === undefined) console.warn(`r2-registry: gc ${name}: another invocation continued collection ${state.id} meanwhile; its progress stands`);
    report.next = state.id;
    return report;
  }
}
