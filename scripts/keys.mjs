#!/usr/bin/env node
// `pnpm keys`: makes a key pair for registry tokens. Writes the private key (a JWK) to a file and
// prints the value of JWT_REGISTRY_TOKENS_PUBLIC_KEY (base64 of the public JWK).
//
//   pnpm keys [--out registry-token-key.json] [--rsa] [--force]
import { existsSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    out: { type: "string", default: "registry-token-key.json" },
    rsa: { type: "boolean", default: false },
    force: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log("Usage: pnpm keys [--out <file>] [--rsa] [--force]\n\nWrites a private key (JWK) to <file> (default registry-token-key.json) and prints\nJWT_REGISTRY_TOKENS_PUBLIC_KEY for it. ES256 (EC P-256) unless --rsa (RS256).");
  process.exit(0);
}
if (existsSync(values.out) && !values.force) {
  console.error(`${values.out} exists; use --force to replace it (tokens signed with it stop working once the registry has the new key)`);
  process.exit(1);
}
const algorithm = values.rsa
  ? { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }
  : { name: "ECDSA", namedCurve: "P-256" };
const pair = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
const kid = new Date().toISOString().slice(0, 10) + "-" + crypto.randomUUID().slice(0, 8);
const alg = values.rsa ? "RS256" : "ES256";
const privateJwk = { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)), kid, alg };
const { d, p, q, dp, dq, qi, key_ops, ext, ...publicJwk } = privateJwk;
writeFileSync(values.out, JSON.stringify(privateJwk, null, 2) + "\n", { mode: 0o600 });
const setting = Buffer.from(JSON.stringify(publicJwk)).toString("base64");
console.log(`Private key (keep it secret, it signs tokens): ${values.out}

JWT_REGISTRY_TOKENS_PUBLIC_KEY=${setting}

Give it to the registry:
  echo '${setting}' | npx wrangler secret put JWT_REGISTRY_TOKENS_PUBLIC_KEY --env production
Then make a token:
  pnpm token --key ${values.out} --caps pull,push --ttl 1h`);
