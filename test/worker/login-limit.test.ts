import { describe, expect, it } from "vitest";
import { loginKeys, LoginLimiter } from "../../src/auth/limits";
import { basic, call, errorCode, RO, RW } from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

const WRONG = basic("hello", "guess");

let next = 0;
/** An address no other test of this file uses (the limiter's memory lasts for the file). */
function address(): string {
  next += 1;
  return `198.51.100.${next}`;
}

/** A `/v2/` probe from `ip`, with these credentials. */
function probe(ip: string, auth: string, env: Record<string, string> = {}) {
  return call("/v2/", { auth, env, headers: { "CF-Connecting-IP": ip } });
}

describe("failed Basic logins per address", () => {
  it("the 11th failure within a minute gets 429 with Retry-After, even with the right password; other addresses still get 401", async () => {
    const attacker = address();
    for (let i = 1; i <= 10; i++) expect((await probe(attacker, WRONG)).status, `attempt ${i}`).toBe(401);
    const blocked = await probe(attacker, WRONG);
    expect(blocked.status).toBe(429);
    expect(await errorCode(blocked)).toBe("TOOMANYREQUESTS");
    const retryAfter = Number(blocked.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // A right password is not told apart while the address is blocked.
    expect((await probe(attacker, RW)).status).toBe(429);
    // The token endpoint's logins count the same.
    const token = await call("/token?scope=repository:a:pull", { auth: RW, env: { ANONYMOUS_PULL: "true" }, headers: { "CF-Connecting-IP": attacker } });
    expect(token.status).toBe(429);

    const bystander = address();
    const refused = await probe(bystander, WRONG);
    expect(refused.status).toBe(401);
    expect(await errorCode(refused)).toBe("UNAUTHORIZED");
    expect((await probe(bystander, RW)).status).toBe(200);
  });

  it("does not count successful logins, and leaves tokens alone", async () => {
    const ip = address();
    for (let i = 0; i < 20; i++) expect((await probe(ip, i % 2 ? RW : RO)).status).toBe(200);
    for (let i = 1; i <= 10; i++) expect((await probe(ip, WRONG)).status, `attempt ${i}`).toBe(401);
    expect((await probe(ip, WRONG)).status).toBe(429);
    // A signed token cannot be guessed: it is still checked, not limited.
    const key = await makeKey("ES256");
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    expect((await probe(ip, `Bearer ${await sign(key, claims(["pull"]))}`, env)).status).toBe(200);
  });

  it("follows LOGIN_FAILURE_LIMIT (0: no limit)", async () => {
    const strict = address();
    for (let i = 1; i <= 3; i++) expect((await probe(strict, WRONG, { LOGIN_FAILURE_LIMIT: "3" })).status).toBe(401);
    expect((await probe(strict, WRONG, { LOGIN_FAILURE_LIMIT: "3" })).status).toBe(429);
    const off = address();
    for (let i = 1; i <= 15; i++) expect((await probe(off, WRONG, { LOGIN_FAILURE_LIMIT: "0" })).status).toBe(401);
  });
});

describe("failed Basic logins: who is counted together", () => {
  it("a burst of wrong passwords sent at once is cut off at the limit", async () => {
    const ip = address();
    const statuses = (await Promise.all(Array.from({ length: 30 }, () => probe(ip, WRONG)))).map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(20);
  });

  it("one user's failures do not lock out another user behind the same address, up to the address's own ceiling", async () => {
    const office = address();
    for (let i = 1; i <= 10; i++) expect((await probe(office, WRONG)).status).toBe(401);
    expect((await probe(office, WRONG)).status).toBe(429);
    // The reader, behind the same NAT, still logs in.
    expect((await probe(office, RO)).status).toBe(200);
    // Guessing across many usernames stops at five times the limit for the address.
    let blocked = 0;
    for (let i = 0; i < 50; i++) if ((await probe(office, basic(`user${i}`, "guess"))).status === 429) blocked += 1;
    expect(blocked).toBeGreaterThan(0);
    expect((await probe(office, basic("someone-else", "guess"))).status).toBe(429);
  });

  it("failures caused by browser pages (with Origin) do not lock out the address's registry clients", async () => {
    const ip = address();
    const fromPage = (auth: string) => call("/v2/", { auth, headers: { "CF-Connecting-IP": ip, Origin: "https://evil.example" } });
    for (let i = 1; i <= 10; i++) expect((await fromPage(WRONG)).status).toBe(401);
    expect((await fromPage(WRONG)).status).toBe(429);
    // docker, skopeo and curl send no Origin: the right password still works from that address.
    expect((await probe(ip, RW)).status).toBe(200);
  });
});

describe("LoginLimiter", () => {
  it("lets an address try again once its window has passed", () => {
    const limiter = new LoginLimiter(60_000);
    for (let i = 0; i < 10; i++) limiter.fail("192.0.2.1", 1_000 + i);
    expect(limiter.retryAfter("192.0.2.1", 10, 2_000)).toBe(59);
    expect(limiter.retryAfter("192.0.2.1", 10, 60_999)).toBe(1);
    expect(limiter.retryAfter("192.0.2.1", 10, 61_000)).toBe(0);
    // A new window starts with the next failure.
    limiter.fail("192.0.2.1", 61_000);
    expect(limiter.retryAfter("192.0.2.1", 10, 61_001)).toBe(0);
    expect(limiter.retryAfter("192.0.2.1", 1, 61_001)).toBe(60);
  });

  it("remembers a bounded number of addresses, forgetting the oldest first", () => {
    const limiter = new LoginLimiter(60_000, 3);
    for (const [i, ip] of ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"].entries()) limiter.fail(ip, i);
    expect(limiter.size).toBe(3);
    expect(limiter.retryAfter("192.0.2.1", 1, 10)).toBe(0);
    expect(limiter.retryAfter("192.0.2.4", 1, 10)).toBe(60);
  });

  it("counts an IPv6 client per /64", () => {
    const limiter = new LoginLimiter();
    limiter.fail(loginKeys("2001:db8:1:2::1", "u").client, 0);
    limiter.fail(loginKeys("2001:0db8:0001:0002:ffff:0:0:9", "u").client, 0);
    expect(limiter.retryAfter(loginKeys("2001:db8:1:2:abcd::", "u").client, 2, 1)).toBe(60);
    expect(limiter.retryAfter(loginKeys("2001:db8:1:3::1", "u").client, 1, 1)).toBe(0);
  });

  it("forgives an attempt that succeeded", () => {
    const limiter = new LoginLimiter();
    limiter.fail("k", 0);
    limiter.forgive("k", 1);
    expect(limiter.retryAfter("k", 1, 2)).toBe(0);
  });
});
