#!/usr/bin/env node
// `pnpm token`: signs a registry token with a private key made by `pnpm keys`.
//
//   pnpm token --key registry-token-key.json --caps pull,push [--repos 'team-a/*'] [--ttl 1h] [--sub ci] [--aud x] [--iss y]
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    key: { type: "string", default: "registry-token-key.json" },
    caps: { type: "string", default: "pull" },
    repos: { type: "string" },
    ttl: { type: "string", default: "1h" },
    sub: { type: "string", default: "token" },
    aud: { type: "string" },
    iss: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(`Usage: pnpm token --key <private jwk> --caps pull[,push] [--repos 'a/*,b'] [--ttl 1h] [--sub name] [--aud a] [--iss i]

  --caps   what the token may do: pull, push, or both
  --repos  limit it to repositories matching these patterns (* matches anything, / included)
  --ttl    lifetime: 90s, 30m, 12h, 7d, or 0 for a token that never expires
  --sub    a name for the token's holder (shown in the registry's messages)
  --aud    its audience (aud), for a registry with JWT_AUDIENCE set
  --iss    its issuer (iss), for a registry with JWT_ISSUER set

Use it as the password: docker login <registry> -u <anything> -p <token>`);
  process.exit(0);
}

function fail(message) {
  console.error(message);
  process.exit(1);
}

const caps = values.caps.split(",").map((c) => c.trim()).filter(Boolean);
if (caps.length === 0 || caps.some((c) => c !== "pull" && c !== "push")) fail("--caps takes pull, push or pull,push");
const ttl = /^(\d+)([smhd]?)$/.exec(values.ttl);
if (!ttl) fail("--ttl takes a number with s, m, h or d, e.g. 1h");
const seconds = Number(ttl[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[ttl[2]];

let jwk;
try {
  jwk = JSON.parse(readFileSync(values.key, "utf8"));
} catch (error) {
  fail(`cannot read the private key ${values.key}: ${error.message} (make one with pnpm keys)`);
}
if (!jwk.d) fail(`${values.key} is not a private key (it has no "d")`);
const alg = jwk.kty === "EC" ? "ES256" : jwk.kty === "RSA" ? "RS256" : fail(`unsupported key type ${jwk.kty}`);
const params = alg === "ES256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
const { key_ops, ext, alg: _alg, ...bare } = jwk;
const key = await crypto.subtle.importKey("jwk", bare, params, false, ["sign"]);

const now = Math.floor(Date.now() / 1000);
const claims = { sub: values.sub, capabilities: caps, iat: now };
if (seconds > 0) claims.exp = now + seconds;
if (values.aud) claims.aud = values.aud;
if (values.iss) claims.iss = values.iss;
if (values.repos) claims.repositories = values.repos.split(",").map((r) => r.trim()).filter(Boolean);
const b64url = (data) => Buffer.from(data).toString("base64url");
const header = { alg, typ: "JWT", ...(jwk.kid ? { kid: jwk.kid } : {}) };
const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
const signature = await crypto.subtle.sign(alg === "ES256" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" }, key, new TextEncoder().encode(input));
console.log(`${input}.${b64url(new Uint8Array(signature))}`);
