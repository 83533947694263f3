/**
 * Failed Basic logins per key (see {@link loginKeys}: a client and a username, and the client
 * alone), in fixed windows, in this isolate's memory: once a key has failed `limit` times in a
 * window, its Basic logins get 429 until the window ends (right or wrong: answering a right
 * password differently would let guessing go on). An attempt counts as it starts and is forgiven
 * when it succeeds, so a burst of guesses sent at once is cut off at the limit too. Memory is
 * bounded: at most `capacity` keys are remembered, and the oldest window goes first.
 *
 * Each isolate counts on its own, so this slows guessing down rather than capping it exactly.
 *
 * @example
 * const limiter = new LoginLimiter();
 * const { user } = loginKeys("192.0.2.1", "alice");
 * limiter.retryAfter(user, 10); // 0: may try
 * limiter.fail(user); // an attempt starts…
 * limiter.forgive(user); // …and succeeded
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

  /** Seconds until `key` may log in again after `limit` failures (0: now; `limit` 0: no limit). */
  retryAfter(key: string, limit: number, now = Date.now()): number {
    if (limit <= 0) return 0;
    const window = this.current(key, now);
    if (!window || window.failures < limit) return 0;
    return Math.max(1, Math.ceil((window.start + this.windowMs - now) / 1000));
  }

  /** Counts a failed (or started) login of `key`. */
  fail(key: string, now = Date.now()): void {
    let window = this.current(key, now);
    if (!window) {
      this.makeRoom(now);
      window = { start: now, failures: 0 };
      this.windows.set(key, window);
    }
    window.failures += 1;
  }

  /** Takes back an attempt counted by {@link fail} that succeeded. */
  forgive(key: string, now = Date.now()): void {
    const window = this.current(key, now);
    if (window && window.failures > 0) window.failures -= 1;
  }

  /** How many keys are remembered. */
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

/**
 * The keys a Basic login is counted under: `user`, the client and the username (so one client with
 * a stale password does not lock out everyone behind the same NAT), and `client`, the client
 * alone (which bounds guessing across usernames; give it a higher limit). A request from a browser
 * page (it carries `Origin`) is counted apart from the same address's registry clients, so a web
 * page that makes visitors' browsers send wrong passwords cannot lock those clients out.
 *
 * @example
 * loginKeys("2001:db8::1", "alice", "https://evil.example");
 * // { user: "2001:db8:0:0::/64 https://evil.example alice", client: "2001:db8:0:0::/64 https://evil.example" }
 */
export function loginKeys(address: string, username: string, origin?: string | null): { user: string; client: string } {
  const client = origin ? `${clientKey(address)} ${origin}` : clientKey(address);
  return { user: `${client} ${username}`, client };
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
