import { keys, lastSegment, listAll } from "../keys";
import { LEASE_MS, type AnySessionState } from "../sessions";

/** What a cleanup of abandoned uploads removed. */
export interface AbandonedReport {
  /** Upload sessions removed (their multipart uploads aborted). */
  sessions: number;
  /**
   * Other temporary objects removed: a session's leases, `after-` records and older versions'
   * pending tails, and serverless-registry's upload records and helpers.
   */
  objects: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-helper)?$/;

/** True when a request holds one of a session's leases (only a recent lease key can). */
async function leased(bucket: R2Bucket, objects: R2Object[], now: number): Promise<boolean> {
  for (const object of objects) {
    if (!object.key.includes("/lease-") || now - object.uploaded.getTime() > LEASE_MS) continue;
    try {
      if (((await (await bucket.get(object.key))?.json<AnySessionState>())?.until ?? 0) > now) return true;
    } catch {
      // Not a lease.
    }
  }
  return false;
}

/**
 * Removes uploads nobody touched for `maxAgeMs` and no request holds: this registry's sessions,
 * every key under `_uploads/<id>/` included (aborting older versions' R2 multipart uploads), and
 * serverless-registry's leftovers (`<name>/uploads/` records, and the `<uuid>` / `<uuid>-helper`
 * objects it leaves at the bucket root). Bytes an
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
  // Every key of a session: its state, `created`, `after-` and `lease-` records, older tails.
  const byId = new Map<string, R2Object[]>();
  for await (const object of listAll(bucket, { prefix: keys.uploadsPrefix, flat: true })) {
    const id = object.key.slice(keys.uploadsPrefix.length).split("/")[0]!;
    const objects = byId.get(id);
    if (objects) objects.push(object);
    else byId.set(id, [object]);
  }
  for (const [id, objects] of byId) {
    const state = objects.find((o) => o.key === keys.upload(id));
    const record = state ?? objects.find((o) => o.key === keys.uploadCreated(id));
    let parsed: AnySessionState = {};
    if (record) {
      const body = await bucket.get(record.key);
      try {
        parsed = body ? (JSON.parse(await body.text()) as AnySessionState) : {};
      } catch {
        parsed = {};
      }
    }
    const touched = Math.max(parsed.updatedAt ?? 0, ...objects.map((o) => o.uploaded.getTime()));
    if ((parsed.leaseUntil ?? 0) > now || now - touched < maxAgeMs || (await leased(bucket, objects, now))) continue;
    if (record) report.sessions++;
    report.objects += objects.filter((o) => o.key !== keys.upload(id) && o.key !== keys.uploadCreated(id)).length;
    if (options.dryRun) continue;
    if (parsed.multipartId && parsed.dataKey) {
      // Aborting a completed upload fails harmlessly; its bytes are the orphan sweep's to judge.
      await bucket
        .resumeMultipartUpload(parsed.dataKey, parsed.multipartId)
        .abort()
        .catch(() => undefined);
    }
    doomed.push(...objects.map((o) => o.key));
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
