/**
 * Runs a push plan against a registry: logs in, pushes the blobs a few at a time (stopping all of
 * them as soon as one fails for good), then puts the manifests (children by digest, the root
 * under the tag) only if every blob is there.
 */
import type { BlobSource, ManifestToPush, PushPlan } from "./image.ts";
import { formatBytes, shortDigest } from "./media.ts";
import type { Progress } from "./progress.ts";
import type { Target } from "./reference.ts";
import { describeResponse, header, NetworkError, type RegistryClient, type Response } from "./registry-client.ts";
import { BlobPushError, pushBlob, type BlobOutcome } from "./upload.ts";

export interface PushOptions {
  concurrency: number;
  chunkSize?: number;
  retries: number;
  retryDelayMs: number;
  mountFrom?: string;
}

export interface PushResult {
  digest: string;
  mediaType: string;
  uploaded: { count: number; bytes: number };
  skipped: { count: number; bytes: number };
  mounted: { count: number; bytes: number };
  seconds: number;
}

/** Runs `task` over `items`, `limit` at a time; the first failure stops new tasks from starting. */
async function pool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>, stop: AbortController): Promise<unknown[]> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length && !stop.signal.aborted) {
      const item = items[next++]!;
      try {
        await task(item);
      } catch (err) {
        errors.push(err);
        stop.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return errors;
}

async function putManifest(client: RegistryClient, m: ManifestToPush, reference: string, opts: PushOptions, progress: Progress): Promise<Response> {
  let last = "";
  for (let attempt = 0; ; attempt++) {
    if (attempt > opts.retries) throw new Error(`the ${m.label} ${m.digest} could not be pushed: ${last}`);
    if (attempt > 0) {
      progress.warn(`retrying the ${m.label}: ${last}`);
      await new Promise((r) => setTimeout(r, Math.min(30_000, opts.retryDelayMs * 2 ** (attempt - 1))));
    }
    try {
      const res = await client.request("PUT", client.repoPath(`/manifests/${reference}`), {
        headers: { "content-type": m.mediaType },
        body: m.bytes,
      });
      if (res.status === 201 || res.status === 200 || res.status === 202) return res;
      last = describeResponse(res);
      if (res.status < 500 && res.status !== 429) throw new Error(`the registry refused the ${m.label} ${m.digest}: ${last}`);
    } catch (err) {
      if (!(err instanceof NetworkError)) throw err;
      last = err.message;
    }
  }
}

export async function runPush(plan: PushPlan, client: RegistryClient, target: Target, opts: PushOptions, progress: Progress): Promise<PushResult> {
  const started = Date.now();
  const root = plan.manifests[plan.manifests.length - 1];
  if (!root) throw new Error("nothing to push: the source has no manifest");
  if (target.digest && target.digest !== root.digest) {
    throw new Error(`the destination names ${target.digest}, but the image's manifest is ${root.digest}`);
  }
  for (const note of plan.notes) progress.info(note);

  await client.login();

  const outcomes = new Map<string, BlobOutcome>();
  const stop = new AbortController();
  progress.begin(plan.blobs);
  let errors: unknown[];
  try {
    errors = await pool(
      plan.blobs,
      opts.concurrency,
      async (blob: BlobSource) => {
        outcomes.set(
          blob.digest,
          await pushBlob(client, blob, {
            chunkSize: opts.chunkSize,
            retries: opts.retries,
            retryDelayMs: opts.retryDelayMs,
            mountFrom: opts.mountFrom,
            events: progress,
            signal: stop.signal,
          }),
        );
      },
      stop,
    );
  } finally {
    progress.end();
  }
  const failures = errors.filter((e) => e instanceof BlobPushError || !(e instanceof Error && e.name === "Aborted"));
  if (failures.length > 0) {
    const messages = failures.map((e) => (e instanceof Error ? e.message : String(e)));
    const shown = messages.slice(0, 3);
    if (messages.length > shown.length) shown.push(`(and ${messages.length - shown.length} more blobs)`);
    throw new Error(`${shown.join("\n")}\nthe manifest was not pushed`);
  }

  for (const m of plan.manifests) {
    const isRoot = m === root;
    const reference = isRoot ? (target.tag ?? m.digest) : m.digest;
    const res = await putManifest(client, m, reference, opts, progress);
    const got = header(res, "docker-content-digest");
    if (got && got !== m.digest) progress.warn(`the registry reports ${got} for the ${m.label}, expected ${m.digest}`);
    progress.info(`put ${m.label} ${shortDigest(m.digest)}${isRoot && target.tag ? ` as ${target.tag}` : ""}`);
  }

  const sum = (o: BlobOutcome) => {
    const blobs = plan.blobs.filter((b) => outcomes.get(b.digest) === o);
    return { count: blobs.length, bytes: blobs.reduce((n, b) => n + b.size, 0) };
  };
  return {
    digest: root.digest,
    mediaType: root.mediaType,
    uploaded: sum("uploaded"),
    skipped: sum("exists"),
    mounted: sum("mounted"),
    seconds: (Date.now() - started) / 1000,
  };
}

/** "pushed 3 blobs (120.1 MiB) in 4.2 s (28.6 MiB/s); 2 already there (1.0 KiB); 0 mounted". */
export function formatTotals(r: PushResult): string {
  const speed = r.seconds > 0 ? ` (${formatBytes(r.uploaded.bytes / r.seconds)}/s)` : "";
  const parts = [`uploaded ${r.uploaded.count} blob${r.uploaded.count === 1 ? "" : "s"} (${formatBytes(r.uploaded.bytes)}) in ${r.seconds.toFixed(1)} s${speed}`];
  if (r.skipped.count) parts.push(`${r.skipped.count} already in the registry (${formatBytes(r.skipped.bytes)})`);
  if (r.mounted.count) parts.push(`${r.mounted.count} mounted (${formatBytes(r.mounted.bytes)})`);
  return parts.join("; ");
}
