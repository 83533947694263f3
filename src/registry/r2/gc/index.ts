import { RegistryError } from "../../../errors";
import type { Budget } from "../budget";
import type { R2Blobs } from "../blobs";
import type { CatalogIndex } from "../catalog-index";
import type { R2Fence } from "../fence";
import { keys } from "../keys";
import type { R2Links } from "../links";
import { loadJson, saveJson } from "../progress";
import { removeAbandonedUploads, removeLegacyUploads, type AbandonedReport, type AbandonedState } from "./abandoned";
import { R2Collector, type CollectMode, type CollectOptions, type CollectReport } from "./collect";
import { orphanSweep, sweepOrphans, type OrphanReport, type OrphanState } from "./orphans";

export type { CollectMode, CollectOptions, CollectReport } from "./collect";

/** A registry-wide run: every repository, then abandoned uploads and unused upload bytes. */
export interface CollectAllOptions extends CollectOptions {
  /** Uploads untouched for this many milliseconds are abandoned. */
  uploadMaxAgeMs: number;
  /**
   * With `cursor`: start the run under that name when there is none (the cron run's `scheduled`),
   * or again once the last one is complete and started at least this many ms ago.
   */
  restartAfterMs?: number;
}

/** Where a registry-wide run stands, across all its invocations. */
export interface RunProgress {
  startedAt: string;
  /** Repositories collected so far (failed ones included), and the last of them in lexical order. */
  repositories: number;
  failed: number;
  last?: string;
  /** The phases of the two sweeps (`done` once complete). */
  uploads: AbandonedState["phase"];
  orphans: OrphanState["phase"];
}

/** What one invocation of a registry-wide run did. */
export interface CollectAllReport {
  mode: CollectMode;
  dryRun: boolean;
  /** The repositories this invocation collected (or went on collecting). */
  repositories: CollectReport[];
  /** Repositories whose collection failed (logged); the run went on without them. */
  failed: { name: string; error: string }[];
  uploads: AbandonedReport;
  orphans: OrphanReport;
  /** Bytes freed in all. */
  bytes: number;
  /** R2 calls this invocation made. */
  operations: number;
  /** True once every repository and both sweeps are done; else `next` continues the run. */
  complete: boolean;
  next?: string;
  progress: RunProgress;
}

/** A run's progress, saved at `_gc/_runs/<id>`. */
interface RunState {
  v: 1;
  id: string;
  mode: CollectMode;
  dryRun: boolean;
  graceMs: number;
  uploadMaxAgeMs: number;
  /** Orphaned bytes written after this are kept (ms since the epoch). */
  cutoff: number;
  startedAt: number;
  completedAt?: number;
  repositories: { after?: string; current?: { name: string; id: string }; done: boolean; count: number; failed: number };
  uploads: AbandonedState;
  orphans: OrphanState;
}

/** The parts a run works with, all on its budget's bucket. */
export interface RunParts {
  bucket: R2Bucket;
  blobs: R2Blobs;
  links: R2Links;
  fence: R2Fence;
  index: CatalogIndex;
}

/** Calls kept back to save the run's progress at the end. */
const RESERVE = 2;
/** The fewest calls worth starting a repository's collection with. */
const REPOSITORY_CALLS = 8;
/** Progress is saved at most this often within an invocation (R2 takes one write per second per key). */
const CHECKPOINT_MS = 5000;

function unknownRun(): RegistryError {
  return new RegistryError("UNSUPPORTED", "no registry-wide garbage collection with that cursor is under way (it expired); start a new one", { status: 400 });
}

/** The Workers runtime refusing more subrequests: nothing more can be done in this invocation. */
function fatal(error: unknown): boolean {
  return /subrequest/i.test(String((error as Error)?.message ?? error));
}

function fresh(id: string, options: CollectAllOptions): RunState {
  const now = Date.now();
  return {
    v: 1,
    id,
    mode: options.mode,
    dryRun: options.dryRun === true,
    graceMs: options.graceMs,
    uploadMaxAgeMs: options.uploadMaxAgeMs,
    cutoff: now - options.graceMs,
    startedAt: now,
    repositories: { done: false, count: 0, failed: 0 },
    uploads: { phase: "sessions" },
    orphans: orphanSweep(),
  };
}

/**
 * Garbage collection of the whole bucket in bounded invocations: every repository (each as safe
 * under concurrent pushes as a single collection, and each failure logged and skipped), the
 * removal of abandoned uploads and the sweep of orphaned upload bytes. The sweeps get a quarter of
 * each invocation's budget first, so they progress however long the repositories take. Progress
 * is saved at `_gc/_runs/<id>`; `next` (the id) continues it.
 *
 * @example
 * let report = await collectAll(parts, { mode: "unreferenced", graceMs: 3_600_000, uploadMaxAgeMs: 86_400_000 }, budget);
 * if (!report.complete) report = await collectAll(parts, { ...options, cursor: report.next }, nextBudget);
 */
export async function collectAll(parts: RunParts, options: CollectAllOptions, budget: Budget): Promise<CollectAllReport> {
  const id = options.cursor ?? crypto.randomUUID();
  const stored = /^[0-9a-z-]{1,64}$/.test(id) ? await loadJson<RunState>(parts.bucket, keys.run(id)) : undefined;
  if (options.cursor !== undefined && !stored && options.restartAfterMs === undefined) throw unknownRun();
  let state = stored?.value.v === 1 ? stored.value : fresh(id, options);
  let etag = stored?.etag;
  const restart = options.restartAfterMs;
  if (state.completedAt !== undefined && restart !== undefined && Date.now() - state.startedAt >= restart) state = fresh(id, options);

  const report: CollectAllReport = {
    mode: state.mode,
    dryRun: state.dryRun,
    repositories: [],
    failed: [],
    uploads: { sessions: 0, objects: 0 },
    orphans: { objects: 0, bytes: 0 },
    bytes: 0,
    operations: 0,
    complete: false,
    progress: progressOf(state),
  };
  const started = budget.used;
  if (state.completedAt !== undefined) return { ...report, complete: true };

  const work = budget.slice(budget.left - RESERVE);
  let lastSave = Date.now();
  let lost = false;
  const save = async () => {
    const written = await saveJson(parts.bucket, keys.run(id), state, etag);
    if (written === undefined) {
      console.warn(`r2-registry: gc run ${id} was continued by another invocation meanwhile; this one stops`);
      lost = true;
    }
    etag = written;
    lastSave = Date.now();
  };

  const sweeps = async (share: Budget, ready: boolean) => {
    try {
      await removeAbandonedUploads(share, state.uploads, { maxAgeMs: state.uploadMaxAgeMs, dryRun: state.dryRun, keep: keys.run(id) }, report.uploads);
      if (ready) await sweepOrphans(share, state.orphans, parts, { cutoff: state.cutoff, dryRun: state.dryRun }, report.orphans);
    } catch (error) {
      if (fatal(error)) throw error;
      console.error(`r2-registry: gc run ${id}: a sweep failed (it resumes in the next invocation):`, error);
    }
  };

  const collector = new R2Collector(parts.bucket, parts.blobs, parts.links, parts.fence);
  const repositories = async () => {
    const progress = state.repositories;
    for (;;) {
      if (!work.allows(REPOSITORY_CALLS)) return;
      const { names, more } = await parts.index.page(progress.after, 100, work.bucket);
      for (const name of names) {
        if (!work.allows(REPOSITORY_CALLS) || lost) return;
        const cursor = progress.current?.name === name ? progress.current.id : undefined;
        try {
          const options: CollectOptions = { mode: state.mode, dryRun: state.dryRun, graceMs: state.graceMs };
          let result: CollectReport;
          try {
            result = await collector.collect(name, { ...options, ...(cursor ? { cursor } : {}) }, work);
          } catch (error) {
            // Its saved progress expired: start it again.
            if (cursor === undefined || !(error instanceof RegistryError && error.status === 400)) throw error;
            result = await collector.collect(name, options, work);
          }
          report.repositories.push(result);
          if (!result.complete) {
            progress.current = { name, id: result.next! };
            return;
          }
          delete progress.current;
          report.uploads.objects += await removeLegacyUploads(work.bucket, name, state.uploadMaxAgeMs, state.dryRun);
        } catch (error) {
          if (fatal(error)) throw error;
          const message = String((error as Error)?.message ?? error);
          console.error(`r2-registry: gc of ${name} failed; the run goes on with the next repository:`, error);
          report.failed.push({ name, error: message });
          progress.failed++;
          delete progress.current;
        }
        progress.after = name;
        progress.count++;
        if (Date.now() - lastSave >= CHECKPOINT_MS) await save();
      }
      if (!more) {
        progress.done = true;
        return;
      }
    }
  };

  // The sweeps and the repositories need every repository and shared blob indexed.
  const ready = await parts.links.backfill(work);
  await sweeps(work.slice(Math.ceil(work.capacity / 4)), ready);
  if (ready && !lost) await repositories();
  if (ready && !lost && state.repositories.done) await sweeps(work, ready);

  report.complete = ready && state.repositories.done && state.uploads.phase === "done" && state.orphans.phase === "done";
  if (report.complete) state.completedAt = Date.now();
  // A run done in one go leaves nothing behind; the cron run's record says when it last started.
  if (!lost && (!report.complete || etag !== undefined || options.cursor !== undefined)) await save();
  if (!report.complete) report.next = id;
  report.bytes = report.repositories.reduce((sum, r) => sum + r.bytes, 0) + report.orphans.bytes;
  report.operations = budget.used - started;
  report.progress = progressOf(state);
  return report;
}

function progressOf(state: RunState): RunProgress {
  const { repositories, uploads, orphans } = state;
  return {
    startedAt: new Date(state.startedAt).toISOString(),
    repositories: repositories.count,
    failed: repositories.failed,
    ...(repositories.after !== undefined ? { last: repositories.after } : {}),
    uploads: uploads.phase,
    orphans: orphans.phase,
  };
}

export { R2Collector };
