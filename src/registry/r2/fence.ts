import { RegistryError } from "../../errors";
import { deleteKeys, keys, listAll } from "./keys";

/**
 * How long a collection's sweep holds a repository before its lease must be renewed. A sweep that
 * died stops holding pushes back after this long.
 */
export const SWEEP_LEASE_MS = 60 * 1000;
/** An intent older than this belongs to a push that died; collections ignore and remove it. */
export const INTENT_TTL_MS = 15 * 60 * 1000;
/** How long a manifest push waits for a sweep to end before answering a retryable error. */
const PUSH_WAIT_MS = 20 * 1000;
/** How long a collection waits for another collection's sweep of the same repository. */
const SWEEP_WAIT_MS = 30 * 1000;
const POLL_MS = 250;

/** A repository's collection state at `_gc/<name>/_state`. */
interface SweepState {
  /** Counts sweeps while the state stands (a sweep that ends deletes it). */
  epoch: number;
  /** Set while a sweep deletes: who holds it and until when (ms since the epoch). */
  sweeping?: { id: string; until: number };
}

/** What a push has announced; `release()` withdraws it once its manifest is stored (or not). */
export interface Intent {
  release(): Promise<void>;
}

/** A sweep's hold on a repository. */
export interface SweepLease {
  /** Extends the lease; throws when it was lost (the sweep must stop deleting). */
  renew(): Promise<void>;
  /** Ends the sweep. */
  release(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function busy(name: string): RegistryError {
  return new RegistryError("UNAVAILABLE", `a garbage collection is removing unreferenced data from ${name}; retry in a few seconds`, {
    headers: { "Retry-After": "5" },
  });
}

/**
 * Keeps manifest pushes and garbage collection of one repository from losing data, without a lock
 * held across either.
 *
 * A push writes an intent naming every digest its manifest relies on, then reads the sweep state,
 * then checks that those digests exist, then stores the manifest, then removes the intent. A
 * collection decides what to delete, takes the sweep lease, then lists intents and manifests again
 * and spares whatever they name, then deletes. Whichever side writes second sees the other's
 * write: either the collection sees the push (and spares its digests), or the push sees the sweep
 * (and waits for it to end before checking, so a deleted blob is reported, never referenced).
 *
 * @example
 * const intent = await fence.announce("team/app", [manifestDigest, ...blobDigests]);
 * try { await check(); await store(); } finally { await intent.release(); }
 */
export class R2Fence {
  constructor(private readonly bucket: R2Bucket) {}

  /**
   * Announces a push relying on `digests`, and returns once no sweep of the repository is under
   * way; throws UNAVAILABLE (retryable) when one does not end in time.
   */
  async announce(name: string, digests: string[]): Promise<Intent> {
    const key = keys.intent(name, crypto.randomUUID());
    await this.bucket.put(key, JSON.stringify({ at: Date.now(), digests }));
    const release = async () => {
      await this.bucket.delete(key);
    };
    try {
      const deadline = Date.now() + PUSH_WAIT_MS;
      while ((await this.read(name)).state.sweeping) {
        if (Date.now() > deadline) throw busy(name);
        await sleep(POLL_MS);
      }
    } catch (error) {
      await release().catch(() => undefined);
      throw error;
    }
    return { release };
  }

  /**
   * The digests that pushes in progress rely on. Intents of pushes that died long ago are removed,
   * in batches of 1,000 (R2's limit per delete); they are told by the listing alone (an intent is
   * written once, as its push starts), so thousands of them cost no reads.
   */
  async announced(name: string): Promise<Set<string>> {
    const digests = new Set<string>();
    const stale: string[] = [];
    for await (const object of listAll(this.bucket, { prefix: keys.intentsPrefix(name) })) {
      if (Date.now() - object.uploaded.getTime() > INTENT_TTL_MS) {
        stale.push(object.key);
        continue;
      }
      const body = await this.bucket.get(object.key);
      if (!body) continue;
      let intent: { at?: unknown; digests?: unknown };
      try {
        intent = JSON.parse(await body.text()) as typeof intent;
      } catch {
        intent = {};
      }
      const at = typeof intent.at === "number" ? intent.at : object.uploaded.getTime();
      if (Date.now() - at > INTENT_TTL_MS) {
        stale.push(object.key);
        continue;
      }
      if (Array.isArray(intent.digests)) for (const d of intent.digests) if (typeof d === "string") digests.add(d);
    }
    await deleteKeys(this.bucket, stale);
    return digests;
  }

  /**
   * Takes the repository's sweep lease, waiting for another collection's sweep to end; throws
   * UNAVAILABLE when it does not end in time.
   */
  async sweep(name: string): Promise<SweepLease> {
    const id = crypto.randomUUID();
    const deadline = Date.now() + SWEEP_WAIT_MS;
    for (;;) {
      const { state, etag } = await this.read(name);
      if (!state.sweeping) {
        const next: SweepState = { epoch: state.epoch + 1, sweeping: { id, until: Date.now() + SWEEP_LEASE_MS } };
        const held = await this.write(name, next, etag);
        if (held) return this.lease(name, id, next, held);
      }
      if (Date.now() > deadline) {
        throw new RegistryError("UNAVAILABLE", `another garbage collection of ${name} is running; retry when it ends`, {
          headers: { "Retry-After": "10" },
        });
      }
      await sleep(POLL_MS);
    }
  }

  private lease(name: string, id: string, initial: SweepState, initialEtag: string): SweepLease {
    let state = initial;
    let etag = initialEtag;
    return {
      renew: async () => {
        // The lease must still be ours and unexpired, or a push may already have trusted it gone.
        if (Date.now() > state.sweeping!.until - 5000) throw new Error(`the sweep lease on ${name} expired`);
        // Nobody takes an unexpired lease over: it is written again only when half of it is
        // left, so the state key is written at most every 30 s (R2 takes one write of a key per
        // second, https://developers.cloudflare.com/r2/platform/limits/).
        if (Date.now() < state.sweeping!.until - SWEEP_LEASE_MS / 2) return;
        const next: SweepState = { ...state, sweeping: { id, until: Date.now() + SWEEP_LEASE_MS } };
        const written = await this.write(name, next, etag);
        if (!written) throw new Error(`the sweep lease on ${name} was lost`);
        state = next;
        etag = written;
      },
      release: async () => {
        // Deleted rather than written again (a delete is not a write R2 limits); only while the
        // lease is surely still ours, else it expires by itself or another sweep holds it now.
        if (Date.now() < state.sweeping!.until - 5000) await this.bucket.delete(keys.gcState(name));
      },
    };
  }

  /** The state and its etag (undefined when it was never written). Expired leases read as none. */
  private async read(name: string): Promise<{ state: SweepState; etag?: string }> {
    const object = await this.bucket.get(keys.gcState(name));
    if (!object) return { state: { epoch: 0 } };
    let state: SweepState;
    try {
      state = JSON.parse(await object.text()) as SweepState;
      if (typeof state.epoch !== "number") state = { epoch: 0 };
    } catch {
      state = { epoch: 0 };
    }
    if (state.sweeping && !(state.sweeping.until > Date.now())) delete state.sweeping;
    return { state, etag: object.etag };
  }

  /** A conditional write: only over `etag`, or only if absent; the new etag, or undefined. */
  private async write(name: string, state: SweepState, etag: string | undefined): Promise<string | undefined> {
    const written = await this.bucket.put(keys.gcState(name), JSON.stringify(state), {
      onlyIf: etag === undefined ? { etagDoesNotMatch: "*" } : { etagMatches: etag },
    });
    return written?.etag;
  }
}
