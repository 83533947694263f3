/**
 * A minimal HTTP(S) client for talking to the registry under test directly (node:https with
 * certificate checks off, since the test registries use self-signed certificates), and a tiny
 * OCI Distribution API client on top of it that answers Basic and Bearer-token challenges the way
 * docker/podman do.
 */
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpRequest {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  timeoutMs?: number;
}

export function httpFetch(req: HttpRequest): Promise<HttpResponse> {
  const url = new URL(req.url);
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const timeoutMs = req.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const r = send(
      url,
      {
        method: req.method ?? "GET",
        headers: req.headers,
        rejectUnauthorized: false,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    r.on("timeout", () => r.destroy(new Error(`${req.method ?? "GET"} ${req.url}: no answer within ${timeoutMs} ms`)));
    r.on("error", reject);
    r.end(req.body);
  });
}

/** One line per header plus the start of the body: for assertion messages. */
export function describeResponse(method: string, url: string, res: HttpResponse): string {
  const headers = Object.entries(res.headers)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`)
    .join("\n");
  const body = res.body.toString("utf8");
  return `${method} ${url} -> ${res.status}\n${headers}\n\n${body.length > 2000 ? `${body.slice(0, 2000)}…` : body}`;
}

function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Parses `Bearer realm="…",service="…",scope="…"`. */
function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const space = value.indexOf(" ");
  const scheme = (space < 0 ? value : value.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  const re = /(\w+)=(?:"([^"]*)"|([^,\s]*))/g;
  for (const m of value.slice(space + 1).matchAll(re)) params[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? "";
  return { scheme, params };
}

export interface Credentials {
  username: string;
  password: string;
}

/**
 * Talks to `/v2/` of one registry as a client would: tries Basic credentials first, and if the
 * registry answers with a Bearer challenge, fetches a token from its realm and retries.
 */
export class RegistryClient {
  readonly baseUrl: string;
  private readonly creds: Credentials | undefined;
  private tokens = new Map<string, string>();

  constructor(baseUrl: string, creds?: Credentials) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.creds = creds;
  }

  private basic(): string | undefined {
    return this.creds ? `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`).toString("base64")}` : undefined;
  }

  /** Like `send`, but follows one redirect (blob downloads may be redirected to storage). */
  async request(method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array | string): Promise<HttpResponse> {
    const res = await this.send(method, path, headers, body);
    const location = header(res, "location");
    if ((method === "GET" || method === "HEAD") && [301, 302, 303, 307, 308].includes(res.status) && location) {
      return httpFetch({ method, url: new URL(location, `${this.baseUrl}${path}`).toString(), headers });
    }
    return res;
  }

  async send(method: string, path: string, headers: Record<string, string> = {}, body?: Uint8Array | string): Promise<HttpResponse> {
    const url = `${this.baseUrl}${path}`;
    const cached = this.tokens.get(path);
    const auth = cached ? `Bearer ${cached}` : this.basic();
    const first = await httpFetch({ method, url, headers: { ...headers, ...(auth ? { authorization: auth } : {}) }, body });
    if (first.status !== 401) return first;
    const challenge = header(first, "www-authenticate");
    if (!challenge || !this.creds) return first;
    const { scheme, params } = parseChallenge(challenge);
    if (scheme !== "bearer" || !params.realm) return first;
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set("service", params.service);
    if (params.scope) tokenUrl.searchParams.set("scope", params.scope);
    const tokenRes = await httpFetch({ url: tokenUrl.toString(), headers: { authorization: this.basic()! } });
    if (tokenRes.status !== 200) return first;
    const json = JSON.parse(tokenRes.body.toString("utf8")) as { token?: string; access_token?: string };
    const token = json.token ?? json.access_token;
    if (!token) return first;
    this.tokens.set(path, token);
    return httpFetch({ method, url, headers: { ...headers, authorization: `Bearer ${token}` }, body });
  }

  /** GET (or HEAD) a manifest with the given Accept header(s). */
  manifest(repo: string, reference: string, accept: readonly string[], method: "GET" | "HEAD" = "GET"): Promise<HttpResponse> {
    return this.request(method, `/v2/${repo}/manifests/${reference}`, { accept: accept.join(", ") });
  }

  blob(repo: string, digest: string, method: "GET" | "HEAD" = "GET"): Promise<HttpResponse> {
    return this.request(method, `/v2/${repo}/blobs/${digest}`);
  }

  /** Accepts every manifest type the suite uses. */
  static readonly allManifestTypes = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
  ] as const;
}

export function headerValue(res: HttpResponse, name: string): string | undefined {
  return header(res, name);
}
