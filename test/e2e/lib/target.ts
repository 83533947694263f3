/**
 * The registry under test, chosen by the environment:
 *   E2E_TARGET unset or "dev"   → our Worker via `node scripts/dev.mjs` (wrangler dev + local R2)
 *   E2E_TARGET=distribution     → CNCF distribution 2.8 (reference behaviour, to check the suite)
 * Both serve HTTPS with a self-signed certificate on 127.0.0.1 and require Basic credentials.
 */
import { startDevServer } from "./dev-server.ts";
import { startDistribution } from "./distribution.ts";
import { RegistryClient } from "./http.ts";

export type TargetKind = "dev" | "distribution";

export function targetKind(): TargetKind {
  const value = (process.env.E2E_TARGET ?? "").trim().toLowerCase();
  if (value === "" || value === "dev") return "dev";
  if (value === "distribution") return "distribution";
  throw new Error(`E2E_TARGET must be "dev" (default) or "distribution", not ${JSON.stringify(process.env.E2E_TARGET)}`);
}

export interface TestRegistry {
  kind: TargetKind;
  /** "127.0.0.1:PORT", the registry part of image references. */
  host: string;
  /** "https://127.0.0.1:PORT". */
  url: string;
  username: string;
  password: string;
  /** A direct API client logged in with the good credentials. */
  client: RegistryClient;
  /** The server's output so far, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export async function startTestRegistry(): Promise<TestRegistry> {
  const kind = targetKind();
  if (kind === "distribution") {
    const d = await startDistribution({ auth: true, tls: true });
    const creds = { username: d.username!, password: d.password! };
    return { kind, host: d.host, url: d.url, ...creds, client: new RegistryClient(d.url, creds), logs: d.logs, stop: d.stop };
  }
  const s = await startDevServer();
  const creds = { username: s.username, password: s.password };
  return { kind, host: s.host, url: s.url, ...creds, client: new RegistryClient(s.url, creds), logs: s.logs, stop: s.stop };
}
