import type { Capability, Config } from "../config";
import { RegistryError } from "../errors";
import { constantTimeEqual, parseBasic } from "./basic";
import { AcceptedHeaders } from "./cache";
import { importVerificationKeys, looksLikeJwt, matchesRepository, verifyToken, type VerificationKey } from "./jwt";
import { loginKeys, loginLimiter } from "./limits";
import { isRegistryToken, parseScopes, signRegistryToken, TOKEN_TTL, tokenKey, verifyRegistryToken, type TokenGrant } from "./token";

/** A client may fail this many times the per-user limit across all usernames in a window. */
const CLIENT_LIMIT_FACTOR = 5;

function forgive(keys: { user: string; client: string }): void {
  loginLimiter.forgive(keys.user);
  loginLimiter.forgive(keys.client);
}

/** Who is asking, and what they may do. */
export interface Principal {
  username: string;
  capabilities: ReadonlySet<Capability>;
  /** Repository patterns a token is limited to; every repository when absent. */
  repositories?: readonly string[];
  /**
   * What a registry token (from `/token`) grants: only these actions on these repositories, and
   * the catalog if it says so. Nothing else when present.
   */
  scope?: TokenGrant;
  /** A request without credentials, let in by `ANONYMOUS_PULL`. */
  anonymous?: boolean;
}

/**
 * What a route needs. `login`: any authenticated caller (the `/v2/` probe); `probe`: pull or
 * push (clients pushing check with HEAD what the registry already has, as the original allowed).
 */
export type Access = "login" | "probe" | Capability;

/** The `WWW-Authenticate` challenge sent with every 401 (when pulls are not public). */
export const CHALLENGE = 'Basic realm="r2-registry", charset="UTF-8"';

/**
 * With public pulls, 401s carry a token challenge instead (as Docker Hub's do): a client without
 * credentials fetches an anonymous token from `/token`, one with credentials gets a token for
 * them, and Docker pulls anonymously while pushes still ask for a login.
 */
export function challengeFor(config: Config, origin: string): string {
  return config.anonymousPull ? `Bearer realm="${origin}${TOKEN_PATH}",service="r2-registry"` : CHALLENGE;
}

/** Path of the token endpoint used with public pulls. */
export const TOKEN_PATH = "/token";
/** Token the endpoint gives callers without credentials: it stands for an anonymous puller. */
const ANONYMOUS_TOKEN = "anonymous";
/** Prefix of the tokens earlier versions handed out (they carried the credentials): refused. */
const LEGACY_BASIC_TOKEN = "r2-basic.";

/**
 * `GET /token` (only with `ANONYMOUS_PULL`): the Docker token flow. Without credentials it hands
 * out the anonymous (pull) token. With valid ones, a signed token (see `token.ts`) that expires
 * in an hour (sooner if the JWT it was asked with does) and grants what the `scope` parameters ask
 * for and the credentials allow, nothing more; it reveals nothing of the credentials.
 *
 * @example
 * curl -u user:pass 'https://registry.example/token?service=r2-registry&scope=repository:foo:pull'
 */
export async function issueToken(request: Request, config: Config, now = Date.now()): Promise<Response> {
  const header = request.headers.get("Authorization");
  const issuedAt = Math.floor(now / 1000);
  if (!header) return tokenResponse(ANONYMOUS_TOKEN, issuedAt, issuedAt + TOKEN_TTL);
  const { principal, until } = await accept(request, config); // 401 for bad credentials
  if (principal.anonymous) return tokenResponse(ANONYMOUS_TOKEN, issuedAt, issuedAt + TOKEN_TTL);
  const expiresAt = Math.min(issuedAt + TOKEN_TTL, until === undefined ? Infinity : Math.floor(until / 1000));
  const key = await tokenKey(config);
  if (!key) {
    // No TOKEN_SECRET and no passwords: the caller came with a JWT, which stands for itself.
    const jwt = /^\s*bearer\s+(\S+)\s*$/i.exec(header)?.[1] ?? parseBasic(header)?.password ?? "";
    return tokenResponse(jwt, issuedAt, expiresAt);
  }
  const grant = narrow(principal, parseScopes(new URL(request.url).searchParams.getAll("scope")));
  return tokenResponse(await signRegistryToken(key, grant, issuedAt, expiresAt), issuedAt, expiresAt);
}

/** The part of a requested grant the principal holds. */
function narrow(principal: Principal, requested: TokenGrant): TokenGrant {
  const repositories = new Map<string, Set<Capability>>();
  for (const [name, actions] of requested.repositories) {
    const held = new Set([...actions].filter((capability) => mayAccess(principal, capability, name)));
    if (held.size > 0) repositories.set(name, held);
  }
  // The whole catalog, only for whoever may see every repository in it.
  const catalog = requested.catalog && principal.repositories === undefined && mayAccess(principal, "pull");
  return { repositories, catalog };
}

function tokenResponse(token: string, issuedAt: number, expiresAt: number): Response {
  const body = JSON.stringify({
    token,
    access_token: token,
    expires_in: Math.max(0, expiresAt - issuedAt),
    issued_at: new Date(issuedAt * 1000).toISOString(),
  });
  return new Response(body, { headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" } });
}

/** The configured user these credentials belong to, compared in constant time. */
async function matchCredential(given: { username: string; password: string }, config: Config): Promise<Principal | undefined> {
  let match: Principal | undefined;
  // Every configured pair is compared, so timing tells nothing about which one exists.
  for (const credential of config.credentials) {
    const [user, pass] = await Promise.all([
      constantTimeEqual(given.username, credential.username),
      constantTimeEqual(given.password, credential.password),
    ]);
    if (user && pass && !match) match = { username: credential.username, capabilities: credential.capabilities };
  }
  return match;
}

const ANONYMOUS: Principal = { username: "anonymous", capabilities: new Set(["pull"]), anonymous: true };
const warned = new Set<string>();

function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  console.error(`r2-registry: ${message}`);
}

const keyCache = new WeakMap<Config, Promise<VerificationKey[]>>();

/** The configured token keys, imported once per configuration; throws if the setting is bad. */
async function tokenKeys(config: Config): Promise<VerificationKey[] | undefined> {
  if (!config.jwtPublicKey) return undefined;
  let keys = keyCache.get(config);
  if (!keys) {
    keys = importVerificationKeys(config.jwtPublicKey);
    keyCache.set(config, keys);
  }
  try {
    return await keys;
  } catch (error) {
    warnOnce(`${(error as Error).message}; tokens cannot be verified until it is fixed`);
    throw new RegistryError("UNAVAILABLE", "the registry is misconfigured: its token key (JWT_REGISTRY_TOKENS_PUBLIC_KEY) is invalid", {
      status: 500,
    });
  }
}

/** A caller let in, and until when their credentials hold (ms since the epoch; for ever when absent). */
interface Accepted {
  principal: Principal;
  until?: number;
}

async function fromToken(token: string, config: Config): Promise<Accepted> {
  const keys = await tokenKeys(config);
  const claims = keys ? await verifyToken(token, keys, { audience: config.jwtAudience, issuer: config.jwtIssuer }) : undefined;
  if (!claims) throw unauthorized("invalid, expired or unverifiable token");
  const capabilities = new Set(claims.capabilities.filter((c): c is Capability => c === "pull" || c === "push"));
  const principal = { username: claims.subject, capabilities, ...(claims.repositories ? { repositories: claims.repositories } : {}) };
  return { principal, ...(claims.expiresAt !== undefined ? { until: claims.expiresAt } : {}) };
}

/** A token from `/token`: verified, unexpired, and standing for exactly what it grants. */
async function fromRegistryToken(token: string, config: Config): Promise<Accepted> {
  const key = await tokenKey(config);
  const result = key ? await verifyRegistryToken(token, key) : ({ refused: "invalid" } as const);
  if ("refused" in result) {
    throw unauthorized(result.refused === "expired" ? "the token has expired; fetch a new one" : "invalid token");
  }
  const { grant, expiresAt } = result.claims;
  const capabilities = new Set<Capability>([...grant.repositories.values()].flatMap((actions) => [...actions]));
  if (grant.catalog) capabilities.add("pull");
  return { principal: { username: "token", capabilities, scope: grant }, until: expiresAt };
}

const acceptedCache = new WeakMap<Config, AcceptedHeaders<Accepted>>();

/** The `Authorization` headers accepted lately under this configuration. */
function acceptedHeaders(config: Config): AcceptedHeaders<Accepted> {
  let cache = acceptedCache.get(config);
  if (!cache) {
    cache = new AcceptedHeaders<Accepted>();
    acceptedCache.set(config, cache);
  }
  return cache;
}

/**
 * Identifies the caller: Basic credentials of a configured user, a JWT (as the Basic password,
 * the original's way, or as `Authorization: Bearer`), a token from `/token`, or nobody when
 * `ANONYMOUS_PULL` is on. Throws UNAUTHORIZED (401 with the configuration's challenge) otherwise,
 * and TOOMANYREQUESTS (429) for Basic logins from an address that failed too often lately (see
 * `limits.ts`). A header accepted lately is recognised without checking it again (see
 * {@link AcceptedHeaders}).
 *
 * @example
 * const principal = await authenticate(request, config);
 */
export async function authenticate(request: Request, config: Config): Promise<Principal> {
  return (await accept(request, config)).principal;
}

/** {@link authenticate}, with until when the credentials hold (for `/token`). */
async function accept(request: Request, config: Config): Promise<Accepted> {
  const header = request.headers.get("Authorization");
  if (config.credentials.length === 0 && !config.jwtPublicKey && !config.anonymousPull) {
    warnOnce(
      "no credentials are configured, so every request is refused. Set USERNAME and PASSWORD " +
        "(and optionally READONLY_USERNAME and READONLY_PASSWORD), e.g. `npx wrangler secret put USERNAME --env production`, " +
        "or JWT_REGISTRY_TOKENS_PUBLIC_KEY for tokens.",
    );
    throw unauthorized("the registry has no credentials configured");
  }
  if (!header) {
    if (config.anonymousPull) return { principal: ANONYMOUS };
    throw unauthorized("authentication required");
  }
  // A client that failed too often gets 429 for every Basic login of that user, even a right (or
  // remembered) one: a different answer would tell the right password apart.
  const address = /^\s*basic(\s|$)/i.test(header) ? request.headers.get("CF-Connecting-IP") : null;
  const limit = config.loginFailureLimit;
  const counted = address && limit > 0 ? loginKeys(address, parseBasic(header)?.username ?? "", request.headers.get("Origin")) : undefined;
  if (counted) {
    const wait = Math.max(loginLimiter.retryAfter(counted.user, limit), loginLimiter.retryAfter(counted.client, limit * CLIENT_LIMIT_FACTOR));
    if (wait > 0) {
      throw new RegistryError("TOOMANYREQUESTS", `too many failed logins from ${address}; try again in ${wait} s`, {
        headers: { "Retry-After": String(wait) },
      });
    }
  }
  // The same header again (every request of a pull carries it): no hashing, no signature check.
  const cache = acceptedHeaders(config);
  const known = cache.recall(header);
  if (known) return known;
  // The attempt counts before it is checked (a burst sent at once is cut off at the limit too),
  // and is forgiven when it succeeds.
  if (counted) {
    loginLimiter.fail(counted.user);
    loginLimiter.fail(counted.client);
  }
  let accepted: Accepted;
  try {
    accepted = await identify(header, config);
  } catch (error) {
    const refused = error instanceof RegistryError && error.code === "UNAUTHORIZED";
    if (counted && !refused) forgive(counted);
    throw error;
  }
  if (counted) forgive(counted);
  cache.remember(header, accepted, accepted.until);
  return accepted;
}

/** Checks an `Authorization` header afresh: who it stands for, or UNAUTHORIZED. */
async function identify(header: string, config: Config): Promise<Accepted> {
  const bearer = /^\s*bearer\s+(\S+)\s*$/i.exec(header)?.[1];
  if (bearer !== undefined) {
    if (bearer === ANONYMOUS_TOKEN && config.anonymousPull) return { principal: ANONYMOUS };
    if (bearer.startsWith(LEGACY_BASIC_TOKEN)) throw unauthorized("tokens of this form are no longer accepted; fetch a new one");
    if (isRegistryToken(bearer)) return fromRegistryToken(bearer, config);
    return fromToken(bearer, config);
  }
  const given = parseBasic(header);
  if (!given) throw unauthorized("authentication required");
  const match = await matchCredential(given, config);
  if (match) return { principal: match };
  if (config.jwtPublicKey && looksLikeJwt(given.password)) return fromToken(given.password, config);
  throw unauthorized("invalid username or password");
}

/**
 * True when the principal may use `capability` on repository `name`, or, without a name, on the
 * registry as a whole (the catalog; a registry token needs `registry:catalog:*` for it).
 *
 * @example
 * mayAccess(principal, "pull", "team-a/app");
 */
export function mayAccess(principal: Principal, capability: Capability, name?: string): boolean {
  if (!principal.capabilities.has(capability)) return false;
  if (principal.scope) {
    if (name === undefined) return capability === "pull" && principal.scope.catalog;
    return principal.scope.repositories.get(name)?.has(capability) === true;
  }
  return name === undefined || principal.repositories === undefined || matchesRepository(name, principal.repositories);
}

/**
 * True when the principal's rights are not limited to some repositories (what a registry-wide
 * garbage collection needs).
 *
 * @example
 * if (!reachesEveryRepository(principal)) throw new RegistryError("DENIED", "…");
 */
export function reachesEveryRepository(principal: Principal): boolean {
  return principal.repositories === undefined && principal.scope === undefined;
}

/**
 * Checks that a principal may do what a route needs, on its repository when it has one. Throws
 * DENIED (403), or UNAUTHORIZED (401) for an anonymous caller, who may still log in.
 *
 * @example
 * authorize(principal, "push", "team-a/app");
 */
export function authorize(principal: Principal, access: Access, name?: string): void {
  // The `/v2/` probe challenges anonymous callers even when pulls are public: clients decide
  // from it whether to send the credentials they have (Docker Hub answers the same way).
  if (access === "login") {
    if (principal.anonymous) throw unauthorized("authentication required");
    return;
  }
  const options: Capability[] = access === "probe" ? ["pull", "push"] : [access];
  if (options.some((capability) => mayAccess(principal, capability, name))) return;
  if (principal.anonymous) throw unauthorized(`${options.join(" or ")} needs credentials`);
  if (principal.scope) {
    const what = name === undefined ? "the catalog (scope registry:catalog:*)" : `${name} (scope repository:${name}:${options.join(",")})`;
    throw new RegistryError("DENIED", `this token does not grant ${options.join(" or ")} on ${what}`, { detail: { name } });
  }
  const held = options.some((capability) => principal.capabilities.has(capability));
  const where = name !== undefined && held ? ` on ${name}` : "";
  throw new RegistryError("DENIED", `${principal.username} may not ${options.join(" or ")}${where}`, { detail: { name } });
}

/** A 401; the Worker adds the `WWW-Authenticate` challenge that fits its configuration. */
function unauthorized(message: string): RegistryError {
  return new RegistryError("UNAUTHORIZED", message);
}
