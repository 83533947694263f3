/**
 * A small memory of the `Authorization` headers that were accepted lately, so that the many small
 * requests of a pull do not each pay for hashing the credentials (or verifying a token's
 * signature) again.
 *
 * It only ever remembers a success, under the exact header value that earned it, until the token
 * it carried expires; so a hit accepts nothing that checking afresh would refuse. A failure is
 * never remembered. The owner keeps one cache per configuration, so changed credentials or keys
 * start from an empty one.
 *
 * @example
 * const cache = new AcceptedHeaders<Principal>();
 * cache.remember(header, principal, claims.expires);
 * cache.recall(header); // the principal, until `claims.expires`
 */
export class AcceptedHeaders<T> {
  private readonly entries = new Map<string, { value: T; until: number }>();

  /** @param capacity The most headers kept; the oldest is forgotten first. */
  constructor(private readonly capacity = 128) {}

  /** What `header` was accepted as, if it was lately and has not expired since. */
  recall(header: string, now = Date.now()): T | undefined {
    const entry = this.entries.get(header);
    if (!entry) return undefined;
    if (now < entry.until) return entry.value;
    this.entries.delete(header);
    return undefined;
  }

  /**
   * Remembers that `header` was accepted as `value`, until `until` (milliseconds since the epoch;
   * for ever when absent).
   */
  remember(header: string, value: T, until = Number.POSITIVE_INFINITY): void {
    if (this.entries.size >= this.capacity && !this.entries.has(header)) {
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(header, { value, until });
  }

  /** How many headers are remembered. */
  get size(): number {
    return this.entries.size;
  }
}
