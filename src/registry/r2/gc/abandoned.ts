import { keys, lastSegment, listAll } from "../keys";
import type { AnySessionState } from "../uploads";

/** What a cleanup of abandoned uploads removed. */
export interface AbandonedReport {
  /** Upload sessions removed (their multipart uploads aborted). */
  sessions: number;
  /** Temporary objects removed: pending tails, serverless-registry's upload records and helpers. */
  objects: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-helper)?$/;

/**
 * Removes uploads nobody touched for `maxAgeMs`: this registry's sessions (aborting their R2
 * multipart uploads, deleting pending tails) and serverless-registry's leftovers (`<name>/uploads/`
 * records, and the `<uuid>` / `<uuid>-helper` objects it leaves at the bucket root). Bytes an
 * upload stored (`_data/`) are never touched here: once its session is gone, the sweep of orphans
 * judges them.
 *
 * @example
 * await removeAbandonedUploads(bucket, ["team/app"], 24 * 3600 * 1000);
 */
export async function removeAbandonedUploads(
  bucket: R2Bucket,
  repositories: AsyncIterable<string>,
  maxAgeMs: number,
  options: { dryRun?: boolean } = {},
): Promise<AbandonedReport> {
  const now = Date.now();
  const report: AbandonedReport = { sessions: 0, objects: 0 };
  const doomed: string[] = [];
  const sessions = new Map<string, R2Object>();
  const tails: R2Object[] = [];
  for await (const object of listAll(bucket, { prefix: keys.uploadsPrefix, flat: true })) {
    const rest = object.key.slice(keys.uploadsPrefix.length);
    if (rest.includes("/")) tails.push(object);
    else sessions.set(rest, object);
  }
  const live = new Set<string>();
  for (const [id, object] of sessions) {
    let state: AnySessionState = {};
    const body = await bucket.get(object.key);
    try {
      state = body ? (JSON.parse(await body.text()) as AnySessionState) : {};
    } catch {
      state = {};
    }
    const touched = Math.max(state.updatedAt ?? 0, object.uploaded.getTime());
    const leased = (state.leaseUntil ?? 0) > now;
    if (leased || now - touched < maxAgeMs) {
      live.add(id);
      continue;
    }
    report.sessions++;
    if (options.dryRun) continue;
    if (state.multipartId && state.dataKey) {
      // Aborting a completed upload fails harmlessly; its bytes are the orphan sweep's to judge.
      await bucket
        .resumeMultipartUpload(state.dataKey, state.multipartId)
        .abort()
        .catch(() => undefined);
    }
    doomed.push(object.key);
  }
  for (const tail of tails) {
    const id = tail.key.slice(keys.uploadsPrefix.length).split("/")[0]!;
    const ofRemovedSession = sessions.has(id) && !live.has(id);
    const orphaned = !sessions.has(id) && now - tail.uploaded.getTime() >= maxAgeMs;
    if (ofRemovedSession || orphaned) {
      doomed.push(tail.key);
      report.objects++;
    }
  }
  // serverless-registry's upload records and root-level upload objects.
  for await (const name of repositories) {
    for await (const object of listAll(bucket, { prefix: `${name}/uploads/` })) {
      if (now - object.uploaded.getTime() >= maxAgeMs) {
        doomed.push(object.key);
        report.objects++;
      }
    }
  }
  for await (const object of listAll(bucket, { prefix: "" })) {
    if (UUID.test(lastSegment(object.key)) && now - object.uploaded.getTime() >= maxAgeMs) {
      doomed.push(object.key);
      report.objects++;
    }
  }
  if (!options.dryRun) for (let i = 0; i < doomed.length; i += 1000) await bucket.delete(doomed.slice(i, i + 1000));
  return report;
}
