import type { Capability, Config } from "../config";
import { RegistryError } from "../errors";
import { constantTimeEqual, parseBasic } from "./basic";

/** Who is asking, and what they may do. */
export interface Principal {
  username: string;
  capabilities: ReadonlySet<Capability>;
}

/** The `WWW-Authenticate` challenge sent with every 401. */
export const CHALLENGE = 'Basic realm="r2-registry", charset="UTF-8"';

let warnedUnconfigured = false;

/**
 * Checks the request's credentials against the configured users. Returns the principal, or
 * throws UNAUTHORIZED (401 with a Basic challenge).
 *
 * @example
 * const principal = await authenticate(request, config);
 */
export async function authenticate(request: Request, config: Config): Promise<Principal> {
  if (config.credentials.length === 0) {
    if (!warnedUnconfigured) {
      warnedUnconfigured = true;
      console.error(
        "r2-registry: no credentials are configured, so every request is refused. Set USERNAME and PASSWORD " +
          "(and optionally READONLY_USERNAME and READONLY_PASSWORD), e.g. `npx wrangler secret put USERNAME --env production`.",
      );
    }
    throw unauthorized("the registry has no credentials configured");
  }
  const given = parseBasic(request.headers.get("Authorization"));
  if (!given) throw unauthorized("authentication required");
  let match: Principal | undefined;
  // Every configured pair is compared, so timing tells nothing about which one exists.
  for (const credential of config.credentials) {
    const [user, pass] = await Promise.all([
      constantTimeEqual(given.username, credential.username),
      constantTimeEqual(given.password, credential.password),
    ]);
    if (user && pass && !match) match = { username: credential.username, capabilities: credential.capabilities };
  }
  if (!match) throw unauthorized("invalid username or password");
  return match;
}

/**
 * Checks that a principal may use a method on a path: reads need `pull`, writes `push`; the
 * `/v2/` probe needs only a valid login. Throws DENIED (403).
 *
 * @example
 * authorize(principal, "PUT", "/v2/foo/manifests/latest");
 */
export function authorize(principal: Principal, method: string, path: string): void {
  if (path === "/v2/" || path === "/v2") return;
  const needed: Capability = method === "GET" || method === "HEAD" ? "pull" : "push";
  if (!principal.capabilities.has(needed)) {
    throw new RegistryError("DENIED", `${principal.username} may not ${needed} (read-only credentials)`);
  }
}

function unauthorized(message: string): RegistryError {
  return new RegistryError("UNAUTHORIZED", message, { headers: { "WWW-Authenticate": CHALLENGE } });
}
