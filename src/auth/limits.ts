/**
 * Failed Basic logins per client address, in fixed windows, in this isolate's memory: once an
 * address has failed `limit` times in a window, its Basic logins get 429 until the window ends
 * (right or wrong: answering a right password differently would let guessing go on). Successful
 * logins are not counted. Memory is bounded: at most `capacity` addresses are remembered, and the
 * oldest window goes first. IPv6 addresses count per /64, which one client usually holds whole.
 *
 * Each isolate counts on its own, so this slows guessing down rather than capping it exactly.
 *
 * @example
 * const limiter = new LoginLimiter();
 * limiter.retryAfter("192.0.2.1", 10); // 0: may try
 * limiter.fail("192.0.2.1");
 */
export class LoginLimiter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  /**
   * @param windowMs Length of a window (60 s).
   * @param capacity The most addresses remembered.
   */
  constructor(
    private readonly windowMs = 60_000,
    private readonly capacity = 4096,
  ) {}

  /** Seconds until `address` may log in again after `limit` failures (0: now; `limit` 0: no limit). */
  retryAfter(address: string, limit: number, now = Date.now()): number {
    if (limit <= 0) return 0;
    const window = this.current(clientKey(address), now);
    if (!window || window.failures < limit) return 0;
    return Math.max(1, Math.ceil((window.start + this.windowMs - now) / 1000));
  }

  /** Counts a failed login from `address`. */
  fail(address: string, now = Date.now()): void {
    const key = clientKey(address);
    let window = this.current(key, now);
    if (!window) {
      this.makeRoom(now);
      window = { start: now, failures: 0 };
      this.windows.set(key, window);
    }
    window.failures += 1;
  }

  /** How many addresses are remembered. */
  get size(): number {
    return this.windows.size;
  }

  /** The address's window if it is still running; an ended one is forgotten. */
  private current(key: string, now: number): { start: number; failures: number } | undefined {
    const window = this.windows.get(key);
    if (window && now >= window.start + this.windowMs) {
      this.windows.delete(key);
      return undefined;
    }
    return window;
  }

  private makeRoom(now: number): void {
    // Windows are inserted as they start, so the map is in order of their ends.
    for (const [key, window] of this.windows) {
      if (this.windows.size < this.capacity && now < window.start + this.windowMs) return;
      this.windows.delete(key);
    }
  }
}

/** The address a client is counted under: itself, or its /64 for IPv6. */
function clientKey(address: string): string {
  const trimmed = address.trim().toLowerCase();
  if (!trimmed.includes(":")) return trimmed;
  const [head = "", tail] = trimmed.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/** The isolate's limiter of failed Basic logins. */
export const loginLimiter = new LoginLimiter();
