import type { Capability, Config } from "../config";
import { RegistryError } from "../errors";
import { constantTimeEqual, parseBasic } from "./basic";
import { AcceptedHeaders } from "./cache";
import { importVerificationKeys, looksLikeJwt, matchesRepository, verifyToken, type VerificationKey } from "./jwt";

/** Who is asking, and what they may do. */
export interface Principal {
  username: string;
  capabilities: ReadonlySet<Capability>;
  /** Repository patterns a token is limited to; every repository when absent. */
  repositories?: readonly string[];
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
/** Token the endpoint gives callers without credentials. */
const ANONYMOUS_TOKEN = "anonymous";
/** Prefix of tokens that carry Basic credentials back to this registry. */
const BASIC_TOKEN = "r2-basic.";

/**
 * `GET /token` (only with `ANONYMOUS_PULL`): the Docker token flow. Without credentials it hands
 * out an anonymous (pull) token; with valid ones, a token that stands for them.
 *
 * @example
 * curl 'https://registry.example/token?service=r2-registry&scope=repository:foo:pull'
 */
export async function issueToken(request: Request, config: Config): Promise<Response> {
  const header = request.headers.get("Authorization");
  let token = ANONYMOUS_TOKEN;
  if (header) {
    await authenticate(request, config); // 401 for bad credentials
    const bearer = /^\s*bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    const given = parseBasic(header);
    if (bearer !== undefined) token = bearer;
    else if (given && looksLikeJwt(given.password) && !(await isUser(given, config))) token = given.password;
    else if (given) token = BASIC_TOKEN + base64url(`${given.username}:${given.password}`);
  }
  const body = JSON.stringify({ token, access_token: token, expires_in: 3600, issued_at: new Date().toISOString() });
  return new Response(body, { headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" } });
}

function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function isUser(given: { username: string; password: string }, config: Config): Promise<boolean> {
  return (await matchCredential(given, config)) !== undefined;
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
  const claims = keys ? await verifyToken(token, keys) : undefined;
  if (!claims) throw unauthorized("invalid, expired or unverifiable token");
  const capabilities = new Set(claims.capabilities.filter((c): c is Capability => c === "pull" || c === "push"));
  const principal = { username: claims.subject, capabilities, ...(claims.repositories ? { repositories: claims.repositories } : {}) };
  return { principal, ...(claims.expiresAt !== undefined ? { until: claims.expiresAt } : {}) };
}

const acceptedCache = new WeakMap<Config, AcceptedHeaders<Principal>>();

/** The `Authorization` headers accepted lately under this configuration. */
function acceptedHeaders(config: Config): AcceptedHeaders<Principal> {
  let cache = acceptedCache.get(config);
  if (!cache) {
    cache = new AcceptedHeaders<Principal>();
    acceptedCache.set(config, cache);
  }
  return cache;
}

/**
 * Identifies the caller: Basic credentials of a configured user, a JWT (as the Basic password,
 * the original's way, or as `Authorization: Bearer`), or nobody when `ANONYMOUS_PULL` is on.
 * Throws UNAUTHORIZED (401 with a Basic challenge) otherwise. A header accepted lately is
 * recognised without checking it again (see {@link AcceptedHeaders}).
 *
 * @example
 * const principal = await authenticate(request, config);
 */
export async function authenticate(request: Request, config: Config): Promise<Principal> {
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
    if (config.anonymousPull) return ANONYMOUS;
    throw unauthorized("authentication required");
  }
  // The same header again (every request of a pull carries it): no hashing, no signature check.
  const cache = acceptedHeaders(config);
  const known = cache.recall(header);
  if (known) return known;
  const { principal, until } = await identify(header, config);
  cache.remember(header, principal, until);
  return principal;
}

/** Checks an `Authorization` header afresh: who it stands for, or UNAUTHORIZED. */
async function identify(header: string, config: Config): Promise<Accepted> {
  const bearer = /^\s*bearer\s+(\S+)\s*$/i.exec(header)?.[1];
  let given = parseBasic(header);
  if (bearer !== undefined) {
    if (bearer === ANONYMOUS_TOKEN && config.anonymousPull) return { principal: ANONYMOUS };
    if (!bearer.startsWith(BASIC_TOKEN)) return fromToken(bearer, config);
    given = parseBasic(`Basic ${bearer.slice(BASIC_TOKEN.length)}`);
  }
  if (!given) throw unauthorized("authentication required");
  const match = await matchCredential(given, config);
  if (match) return { principal: match };
  if (config.jwtPublicKey && looksLikeJwt(given.password)) return fromToken(given.password, config);
  throw unauthorized("invalid username or password");
}

/** True when the principal may use `capability` on repository `name`. */
export function mayAccess(principal: Principal, capability: Capability, name?: string): boolean {
  if (!principal.capabilities.has(capability)) return false;
  return name === undefined || principal.repositories === undefined || matchesRepository(name, principal.repositories);
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
  const held = options.some((capability) => principal.capabilities.has(capability));
  const where = name !== undefined && held ? ` on ${name}` : "";
  throw new RegistryError("DENIED", `${principal.username} may not ${options.join(" or ")}${where}`, { detail: { name } });
}

/** A 401; the Worker adds the `WWW-Authenticate` challenge that fits its configuration. */
function unauthorized(message: string): RegistryError {
  return new RegistryError("UNAUTHORIZED", message);
}
