import { beforeAll, describe, expect, it } from "vitest";
import { basic, call, errorCode, imageManifest, putManifest, type CallOptions } from "./helpers";
import { b64url, claims, hs256WithPublicKey, makeKey, setting, sign, type TestKey } from "./tokens";

let es: TestKey;
let rs: TestKey;
let other: TestKey;

beforeAll(async () => {
  [es, rs, other] = await Promise.all([makeKey("ES256"), makeKey("RS256"), makeKey("ES256")]);
});

/** Options for a call with a token as the Basic password (the original's way). */
function asPassword(token: string, env: CallOptions["env"]): CallOptions {
  return { auth: basic("anything", token), env };
}

describe("JWT tokens", () => {
  it("an ES256 token works as the Basic password and as a Bearer token", async () => {
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(es) };
    const token = await sign(es, claims(["pull", "push"]));
    expect((await call("/v2/", asPassword(token, env))).status).toBe(200);
    expect((await call("/v2/", { auth: `Bearer ${token}`, env })).status).toBe(200);
    const image = await imageManifest("tok/es");
    const put = await call("/v2/tok/es/manifests/v1", {
      ...asPassword(token, env),
      method: "PUT",
      body: image.text,
      headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" },
    });
    expect(put.status).toBe(201);
  });

  it("an RS256 key works, and the original's base64 of a WebCrypto-exported JWK (key_ops, ext) too", async () => {
    const token = await sign(rs, claims(["pull"]));
    expect((await call("/v2/_catalog", asPassword(token, { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(rs) }))).status).toBe(200);
    const exported = { ...es.publicJwk, key_ops: ["verify"], ext: true };
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: btoa(JSON.stringify(exported)) };
    expect((await call("/v2/_catalog", asPassword(await sign(es, claims(["pull"])), env))).status).toBe(200);
  });

  it("a JWK Set picks the key by kid, so keys can be rotated", async () => {
    const [k1, k2] = await Promise.all([makeKey("ES256", "2025"), makeKey("ES256", "2026")]);
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(k1, k2) };
    expect((await call("/v2/", asPassword(await sign(k1, claims(["pull"])), env))).status).toBe(200);
    expect((await call("/v2/", asPassword(await sign(k2, claims(["pull"])), env))).status).toBe(200);
    const unknownKid = await sign(k2, claims(["pull"]), { kid: "1999" });
    expect((await call("/v2/", asPassword(unknownKid, env))).status).toBe(401);
  });

  it("rejects forged, altered, expired and not-yet-valid tokens with 401", async () => {
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(es) };
    const good = await sign(es, claims(["pull"]));
    const [h, p, s] = good.split(".") as [string, string, string];
    const now = Math.floor(Date.now() / 1000);
    const rejected: Record<string, string> = {
      "alg none": `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${p}.`,
      "HS256 with the public key as secret": await hs256WithPublicKey(es, claims(["pull", "push"])),
      "signed by another key": await sign(other, claims(["pull"])),
      "signed by a key of the wrong type": await sign(rs, claims(["pull"])),
      "tampered payload": `${h}.${b64url(JSON.stringify(claims(["pull", "push"])))}.${s}`,
      "tampered header": `${b64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid: "x" }))}.${p}.${s}`,
      "truncated signature": `${h}.${p}.${s.slice(0, 20)}`,
      expired: await sign(es, claims(["pull"], { exp: now - 3600 })),
      "not yet valid": await sign(es, claims(["pull"], { nbf: now + 3600 })),
      "no capabilities claim": await sign(es, { sub: "x", exp: now + 60 }),
      "not a token": "hello.world",
    };
    for (const [what, token] of Object.entries(rejected)) {
      const res = await call("/v2/", asPassword(token, env));
      expect(res.status, what).toBe(401);
      expect(res.headers.get("WWW-Authenticate"), what).toMatch(/^Basic realm=/);
      expect((await call("/v2/", { auth: `Bearer ${token}`, env })).status, `${what} (Bearer)`).toBe(401);
    }
  });

  it("a token without the capability gets 403 DENIED, and one outside its repositories too", async () => {
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(es) };
    const image = await imageManifest("team-a/app");
    expect((await putManifest("team-a/app", "v1", image.text)).status).toBe(201);
    await imageManifest("team-b/app");
    expect((await putManifest("team-b/app", "v1", (await imageManifest("team-b/app")).text)).status).toBe(201);

    const pullOnly = await sign(es, claims(["pull"]));
    expect((await call("/v2/team-a/app/manifests/v1", asPassword(pullOnly, env))).status).toBe(200);
    const denied = await call("/v2/team-a/app/blobs/uploads/", { ...asPassword(pullOnly, env), method: "POST" });
    expect(denied.status).toBe(403);
    expect(await errorCode(denied)).toBe("DENIED");

    const scoped = await sign(es, claims(["pull", "push"], { repositories: ["team-a/*"] }));
    expect((await call("/v2/team-a/app/manifests/v1", asPassword(scoped, env))).status).toBe(200);
    expect((await call("/v2/team-a/app/blobs/uploads/", { ...asPassword(scoped, env), method: "POST" })).status).toBe(202);
    const outside = await call("/v2/team-b/app/manifests/v1", asPassword(scoped, env));
    expect(outside.status).toBe(403);
    expect(await errorCode(outside)).toBe("DENIED");
    const catalog = (await (await call("/v2/_catalog", asPassword(scoped, env))).json()) as { repositories: string[] };
    expect(catalog.repositories).toContain("team-a/app");
    expect(catalog.repositories).not.toContain("team-b/app");
    // Mounting from a repository outside the token's reach opens a plain session instead.
    const mount = await call(`/v2/team-a/other/blobs/uploads/?mount=${image.blobs[0]}&from=team-b/app`, { ...asPassword(scoped, env), method: "POST" });
    expect(mount.status).toBe(202);
  });

  it("checks aud and iss when JWT_AUDIENCE and JWT_ISSUER are set, and only then", async () => {
    const key = setting(es);
    const strict = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: key, JWT_AUDIENCE: "r2-registry", JWT_ISSUER: "https://issuer.example" };
    const iss = "https://issuer.example";
    const accepted: Record<string, Record<string, unknown>> = {
      "aud and iss match": { aud: "r2-registry", iss },
      "aud is an array naming it": { aud: ["other", "r2-registry"], iss },
    };
    const refused: Record<string, Record<string, unknown>> = {
      "another audience": { aud: "someone-else", iss },
      "no audience": { iss },
      "an array without it": { aud: ["other"], iss },
      "another issuer": { aud: "r2-registry", iss: "https://evil.example" },
      "no issuer": { aud: "r2-registry" },
    };
    for (const [what, extra] of Object.entries(accepted)) {
      const token = await sign(es, claims(["pull"], extra));
      expect((await call("/v2/", asPassword(token, strict))).status, what).toBe(200);
      expect((await call("/v2/", { auth: `Bearer ${token}`, env: strict })).status, `${what} (Bearer)`).toBe(200);
    }
    for (const [what, extra] of Object.entries(refused)) {
      const token = await sign(es, claims(["pull"], extra));
      expect((await call("/v2/", asPassword(token, strict))).status, what).toBe(401);
      expect((await call("/v2/", { auth: `Bearer ${token}`, env: strict })).status, `${what} (Bearer)`).toBe(401);
      // Not configured: not checked.
      expect((await call("/v2/", asPassword(token, { JWT_REGISTRY_TOKENS_PUBLIC_KEY: key }))).status, `${what} (unchecked)`).toBe(200);
    }
    const onlyIssuer = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: key, JWT_ISSUER: iss };
    expect((await call("/v2/", asPassword(await sign(es, claims(["pull"], { iss })), onlyIssuer))).status).toBe(200);
    expect((await call("/v2/", asPassword(await sign(es, claims(["pull"], { iss: "x" })), onlyIssuer))).status).toBe(401);
  });

  it("keeps username/password logins working next to tokens", async () => {
    const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(es) };
    expect((await call("/v2/", { env })).status).toBe(200);
    expect((await call("/v2/", { env, auth: basic("hello", "wrong") })).status).toBe(401);
  });

  it("a malformed key setting is a clear 500 for token requests, while passwords still work", async () => {
    const token = await sign(es, claims(["pull"]));
    for (const bad of ["not base64!", btoa("not json"), btoa(JSON.stringify({ kty: "oct", k: "c2VjcmV0" })), btoa(JSON.stringify({ kty: "EC", crv: "P-256", x: "AA", y: "AA" }))]) {
      const env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: bad };
      const res = await call("/v2/", asPassword(token, env));
      expect(res.status, bad).toBe(500);
      expect(((await res.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(/misconfigured/);
      expect((await call("/v2/", { env })).status, bad).toBe(200);
    }
  });
});
