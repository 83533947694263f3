import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { AcceptedHeaders } from "../../src/auth/cache";
import type { Env } from "../../src/env";
import worker from "../../src/index";
import { basic, ORIGIN, RO, RW } from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

/**
 * One request with a given environment object: the Worker remembers accepted headers per
 * configuration, i.e. per environment object, so these tests keep theirs across requests
 * (`call` makes a fresh one each time).
 */
async function send(environment: Env, auth: string, path = "/v2/", method = "GET"): Promise<number> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(new Request(`${ORIGIN}${path}`, { method, headers: { Authorization: auth } }), environment, ctx);
  await waitOnExecutionContext(ctx);
  await response.body?.cancel();
  return response.status;
}

describe("accepted Authorization headers", () => {
  it("are recognised again, while other headers are still checked", async () => {
    const environment = { ...env } as Env;
    for (let i = 0; i < 3; i++) {
      expect(await send(environment, RW)).toBe(200);
      expect(await send(environment, basic("hello", "wrong"))).toBe(401);
      expect(await send(environment, basic("hello", "world "))).toBe(401);
      expect(await send(environment, RO)).toBe(200);
      // The read-only user stays read-only when recognised from memory.
      expect(await send(environment, RO, "/v2/cache/app/blobs/uploads/", "POST")).toBe(403);
    }
  });

  it("accepted under one configuration are refused under another with other credentials", async () => {
    const before = { ...env } as Env;
    expect(await send(before, RW)).toBe(200);
    const after = { ...env, PASSWORD: "changed" } as Env;
    expect(await send(after, RW)).toBe(401);
    expect(await send(after, basic("hello", "changed"))).toBe(200);
  });

  it("are refused once the token they carry has expired", async () => {
    const key = await makeKey("ES256");
    const environment = { ...env, JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) } as Env;
    // Expired 28 s ago: still inside the 30 s of tolerated skew, for another 1 to 2 s.
    const now = Math.floor(Date.now() / 1000);
    const token = await sign(key, claims(["pull"], { exp: now - 28 }));
    expect(await send(environment, `Bearer ${token}`)).toBe(200);
    expect(await send(environment, `Bearer ${token}`)).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect(await send(environment, `Bearer ${token}`)).toBe(401);
  });
});

describe("AcceptedHeaders", () => {
  it("forgets the oldest header first when full", () => {
    const cache = new AcceptedHeaders<string>(2);
    cache.remember("a", "A");
    cache.remember("b", "B");
    cache.remember("c", "C");
    expect(cache.size).toBe(2);
    expect(cache.recall("a")).toBeUndefined();
    expect(cache.recall("b")).toBe("B");
    expect(cache.recall("c")).toBe("C");
  });

  it("keeps an entry until its expiry, then forgets it", () => {
    const cache = new AcceptedHeaders<string>();
    cache.remember("token", "T", 1000);
    expect(cache.recall("token", 999)).toBe("T");
    expect(cache.recall("token", 1000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
