import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { issueToken } from "../../src/auth";
import { parseScopes, signRegistryToken, tokenKey, verifyRegistryToken } from "../../src/auth/token";
import { parseConfig } from "../../src/config";
import type { Env } from "../../src/env";
import { basic, call, errorCode, imageManifest, ORIGIN, putManifest, RO, RW, uniqueName } from "./helpers";
import { b64url, claims, makeKey, setting, sign } from "./tokens";

/** Public pulls on, so `/token` is served. */
const PUBLIC = { ANONYMOUS_PULL: "true" };

/** The Worker's environment with overrides (what `call` sends). */
function environment(overrides: Partial<Env> = {}): Env {
  return { ...env, ...PUBLIC, ...overrides } as Env;
}

/** Asks `/token` for these scopes with these credentials. */
async function fetchToken(scopes: string[], auth: string | null = RW, overrides: Partial<Env> = {}) {
  const query = new URLSearchParams({ service: "r2-registry" });
  for (const scope of scopes) query.append("scope", scope);
  const res = await call(`/token?${query}`, { auth, env: { ...PUBLIC, ...overrides } });
  const text = await res.text();
  const body = res.status === 200 ? (JSON.parse(text) as { token: string; access_token: string; expires_in: number; issued_at: string }) : undefined;
  return { status: res.status, text, body, token: body?.token ?? "" };
}

/** The JSON payload of a registry token (its third dot-separated part). */
function payloadOf(token: string): { iat: number; exp: number; access: { type: string; name: string; actions: string[] }[] } {
  const part = token.split(".")[2] ?? "";
  return JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (part.length % 4)) % 4)));
}

function bearer(token: string, overrides: Partial<Env> = {}) {
  return { auth: `Bearer ${token}`, env: { ...PUBLIC, ...overrides } };
}

let repo: string;
let other: string;
let image: { text: string; digest: string; blobs: string[] };

beforeAll(async () => {
  repo = uniqueName("tokens");
  other = uniqueName("tokens");
  image = await imageManifest(repo);
  expect((await putManifest(repo, "v1", image.text)).status).toBe(201);
  expect((await putManifest(other, "v1", (await imageManifest(other)).text)).status).toBe(201);
});

describe("tokens from /token", () => {
  it("reveal nothing of the credentials, and say when they were issued and how long they last", async () => {
    const before = Math.floor(Date.now() / 1000);
    for (const [auth, user, pass] of [
      [RW, "hello", "world"],
      [RO, "reader", "pull-only"],
    ] as const) {
      const { status, text, body, token } = await fetchToken([`repository:${repo}:pull,push`], auth);
      expect(status).toBe(200);
      const pair = new TextEncoder().encode(`${user}:${pass}`);
      const b64 = btoa(String.fromCharCode(...pair));
      for (const secret of [pass, user, b64, b64.replace(/=+$/, ""), b64url(pair)]) expect(text).not.toContain(secret);
      expect(JSON.stringify(payloadOf(token))).not.toContain(pass);
      expect(body!.access_token).toBe(token);
      expect(body!.expires_in).toBe(3600);
      const issued = Date.parse(body!.issued_at) / 1000;
      expect(issued).toBeGreaterThanOrEqual(before);
      expect(issued).toBeLessThanOrEqual(Date.now() / 1000);
      expect(payloadOf(token).exp - payloadOf(token).iat).toBe(3600);
    }
  });

  it("expire as announced, and an expired one gets 401 with the Bearer challenge", async () => {
    const config = parseConfig(environment());
    const request = new Request(`${ORIGIN}/token?scope=repository:${repo}:pull`, { headers: { Authorization: RW } });
    // Issued with a clock two hours behind: expired an hour ago.
    const stale = (await (await issueToken(request, config, Date.now() - 2 * 3600_000)).json()) as { token: string };
    const res = await call(`/v2/${repo}/manifests/v1`, bearer(stale.token));
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe(`Bearer realm="${ORIGIN}/token",service="r2-registry"`);
    expect(await errorCode(res)).toBe("UNAUTHORIZED");

    // A fresh one holds until the announced second, not after.
    const { token, body } = await fetchToken([`repository:${repo}:pull`]);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token))).status).toBe(200);
    const key = (await tokenKey(config))!;
    const issued = Date.parse(body!.issued_at);
    expect("claims" in (await verifyRegistryToken(token, key, issued + 3599_000))).toBe(true);
    expect(await verifyRegistryToken(token, key, issued + 3600_000)).toEqual({ refused: "expired" });

    // One signed with the registry's key but past its expiry: refused too.
    const now = Math.floor(Date.now() / 1000);
    const past = await signRegistryToken(key, parseScopes([`repository:${repo}:pull`]), now - 60, now - 1);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(past))).status).toBe(401);
  });

  it("grant only the scope asked for: no push with a pull token, nothing on other repositories or the catalog", async () => {
    const { token } = await fetchToken([`repository:${repo}:pull`]);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token))).status).toBe(200);
    expect((await call(`/v2/${repo}/blobs/${image.blobs[1]}`, bearer(token))).status).toBe(200);
    const push = await call(`/v2/${repo}/blobs/uploads/`, { ...bearer(token), method: "POST" });
    expect(push.status).toBe(403);
    expect(await errorCode(push)).toBe("DENIED");
    const elsewhere = await call(`/v2/${other}/manifests/v1`, bearer(token));
    expect(elsewhere.status).toBe(403);
    expect(await errorCode(elsewhere)).toBe("DENIED");
    expect((await call("/v2/_catalog", bearer(token))).status).toBe(403);
    expect((await call("/v2/_gc", { ...bearer(token), method: "POST" })).status).toBe(403);
    // docker login asks with no scope: the token logs in and does nothing else.
    const login = await fetchToken([]);
    expect((await call("/v2/", bearer(login.token))).status).toBe(200);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(login.token))).status).toBe(403);
  });

  it("grant several scopes at once (docker's mount source, the catalog)", async () => {
    const { token } = await fetchToken([`repository:${repo}:pull,push`, `repository:${other}:pull registry:catalog:*`]);
    expect((await call(`/v2/${repo}/blobs/uploads/`, { ...bearer(token), method: "POST" })).status).toBe(202);
    expect((await call(`/v2/${other}/manifests/v1`, bearer(token))).status).toBe(200);
    expect((await call(`/v2/${other}/blobs/uploads/`, { ...bearer(token), method: "POST" })).status).toBe(403);
    const catalog = await call("/v2/_catalog", bearer(token));
    expect(catalog.status).toBe(200);
    expect(((await catalog.json()) as { repositories: string[] }).repositories).toEqual(expect.arrayContaining([repo, other]));
  });

  it("asked for pull and push with read-only credentials, grant pull only", async () => {
    const { token } = await fetchToken([`repository:${repo}:pull,push`], RO);
    expect(payloadOf(token).access).toEqual([{ type: "repository", name: repo, actions: ["pull"] }]);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token))).status).toBe(200);
    const push = await call(`/v2/${repo}/blobs/uploads/`, { ...bearer(token), method: "POST" });
    expect(push.status).toBe(403);
    expect(await errorCode(push)).toBe("DENIED");
  });

  it("asked for with a JWT, grant no more than the JWT and expire no later", async () => {
    const key = await makeKey("ES256");
    const overrides = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    const jwtExpiry = Math.floor(Date.now() / 1000) + 600;
    const jwt = await sign(key, claims(["pull"], { repositories: [`${repo}*`], exp: jwtExpiry }));
    const scopes = [`repository:${repo}:pull,push`, `repository:${other}:pull`, "registry:catalog:*"];
    const { token, body } = await fetchToken(scopes, basic("ci", jwt), overrides);
    expect(payloadOf(token).access).toEqual([{ type: "repository", name: repo, actions: ["pull"] }]);
    expect(payloadOf(token).exp).toBeLessThanOrEqual(jwtExpiry + 30);
    expect(body!.expires_in).toBeLessThanOrEqual(630);
  });

  it("refuse a tampered token, one signed with another key, and the old r2-basic. tokens", async () => {
    const { token } = await fetchToken([`repository:${repo}:pull`]);
    const [prefix, version, payload, signature] = token.split(".") as [string, string, string, string];
    const widened = b64url(JSON.stringify({ ...payloadOf(token), access: [{ type: "repository", name: repo, actions: ["pull", "push"] }] }));
    const flipped = `${signature.slice(0, 10)}${signature[10] === "A" ? "B" : "A"}${signature.slice(11)}`;
    const config = parseConfig(environment({ TOKEN_SECRET: "another secret, long enough to be a key" }));
    const now = Math.floor(Date.now() / 1000);
    const otherKey = await signRegistryToken((await tokenKey(config))!, parseScopes([`repository:${repo}:pull`]), now, now + 3600);
    const refused: Record<string, string> = {
      "widened payload": `${prefix}.${version}.${widened}.${signature}`,
      "altered signature": `${prefix}.${version}.${payload}.${flipped}`,
      "truncated signature": `${prefix}.${version}.${payload}.${signature.slice(0, 20)}`,
      "no signature": `${prefix}.${version}.${payload}.`,
      "signed with another key": otherKey,
      "the old form": `r2-basic.${b64url("hello:world")}`,
    };
    for (const [what, bad] of Object.entries(refused)) {
      const res = await call(`/v2/${repo}/manifests/v1`, bearer(bad));
      expect(res.status, what).toBe(401);
      expect(res.headers.get("WWW-Authenticate"), what).toMatch(/^Bearer realm=/);
    }
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token))).status).toBe(200);
  });

  it("stop working when TOKEN_SECRET or a password changes", async () => {
    const secret = { TOKEN_SECRET: "first secret, 32 characters long!" };
    const { token } = await fetchToken([`repository:${repo}:pull`], RW, secret);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token, secret))).status).toBe(200);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token, { TOKEN_SECRET: "second secret, 32 characters long" }))).status).toBe(401);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token, { ...secret, PASSWORD: "changed" }))).status).toBe(401);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(token, {}))).status).toBe(401);

    // Without TOKEN_SECRET the key comes from the credentials: a new password voids the tokens.
    const derived = await fetchToken([`repository:${repo}:pull`]);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(derived.token))).status).toBe(200);
    expect((await call(`/v2/${repo}/manifests/v1`, bearer(derived.token, { PASSWORD: "changed" }))).status).toBe(401);
  });
});

describe("parseScopes", () => {
  it("reads Docker's scope grammar and leaves out what it does not know", () => {
    const grant = parseScopes([
      "repository:team/app:pull,push",
      "repository:team/app:delete repository(plugin):plug/in:pull",
      "repository:Bad/Name:pull repository:x:frobnicate registry:catalog:* image:y:pull",
    ]);
    expect([...grant.repositories].map(([name, actions]) => [name, [...actions].sort()])).toEqual([
      ["team/app", ["pull", "push"]],
      ["plug/in", ["pull"]],
    ]);
    expect(grant.catalog).toBe(true);
    expect(parseScopes([]).catalog).toBe(false);
    expect(parseScopes(["repository:a:*"]).repositories.get("a")).toEqual(new Set(["pull", "push"]));
  });
});
