/**
 * HTTP to one registry repository: keep-alive agents (TLS checks optional), request bodies that
 * are buffers or streams, and credentials — Basic, a Bearer token given by the user, or a token
 * fetched from the realm of a `Bearer realm=…` challenge with the Basic credentials (the way
 * distribution's token servers work).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Readable } from "node:stream";

export interface Credentials {
  username?: string;
  password?: string;
  /** A bearer token (JWT) to send as is. */
  token?: string;
}

export interface ClientOptions {
  baseUrl: string;
  repository: string;
  credentials: Credentials;
  /** Skip TLS certificate verification. */
  insecure: boolean;
  /** Socket inactivity timeout, ms. */
  timeoutMs: number;
  maxSockets: number;
  /** Another repository blobs may be mounted from (needs pull access there). */
  mountFrom?: string;
  userAgent?: string;
  /**
   * When the plain-HTTP first contact meets a TLS server (a loopback host with no scheme forced,
   * e.g. `pnpm dev`), switch to HTTPS and report it here.
   */
  tlsFallback?: (message: string) => void;
  /** Called with one line per HTTP exchange ("PATCH /v2/…/uploads/… [0-49999999] -> 202"), for --verbose. */
  trace?: (line: string) => void;
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  url: string;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** A buffer, or a function returning a fresh stream (so the request can be repeated). */
  body?: Buffer | (() => Readable);
  /** Content-Length of a streamed body. */
  bodyLength?: number;
  timeoutMs?: number;
  /** Aborts the request (it then fails with a NetworkError). */
  signal?: AbortSignal;
}

/** A request that got no HTTP answer (connection refused, reset, timeout, TLS failure…). */
export class NetworkError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.name = "NetworkError";
    this.code = code;
  }
}

/** A request whose answer was not what the protocol expects. */
export class RegistryResponseError extends Error {
  readonly status: number;
  readonly response: Response;
  constructor(what: string, res: Response) {
    super(`${what}: ${describeResponse(res)}`);
    this.name = "RegistryResponseError";
    this.status = res.status;
    this.response = res;
  }
}

export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** "416 RANGE_INVALID: chunk starts at 5 but the upload holds 0 bytes". */
export function describeResponse(res: Response): string {
  const text = res.body.toString("utf8");
  let detail = "";
  try {
    const json = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    if (Array.isArray(json.errors) && json.errors.length > 0) {
      detail = json.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
    }
  } catch {
    detail = text.trim().slice(0, 300);
  }
  return `HTTP ${res.status}${detail ? ` ${detail}` : ""}`;
}

/** Parses `Bearer realm="…",service="…",scope="…"`. */
export function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const space = value.indexOf(" ");
  const scheme = (space < 0 ? value : value.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  for (const m of value.slice(space + 1).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) params[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? "";
  return { scheme, params };
}

const NETWORK_HINTS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: "the registry's certificate is self-signed: pass --insecure to skip verification",
  SELF_SIGNED_CERT_IN_CHAIN: "the registry's certificate chain is self-signed: pass --insecure to skip verification",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the registry's certificate cannot be verified: pass --insecure to skip verification",
  ERR_TLS_CERT_ALTNAME_INVALID: "the registry's certificate does not name this host: pass --insecure to skip verification",
  HPE_INVALID_CONSTANT: "the registry did not answer in HTTP: if it serves HTTPS, pass --https (and --insecure for a self-signed certificate such as pnpm dev's)",
  ERR_SSL_WRONG_VERSION_NUMBER: "the registry does not speak TLS on this port: pass --http",
  ECONNREFUSED: "nothing listens there: is the registry running?",
};

export class RegistryClient {
  baseUrl: string;
  readonly repository: string;
  private readonly opts: ClientOptions;
  private agent: HttpAgent | HttpsAgent;
  private authorization: string | undefined;
  private challenge: { realm: string; service?: string } | undefined;

  constructor(opts: ClientOptions) {
    this.opts = opts;
    this.baseUrl = opts.baseUrl.replace(/\/$/, "");
    this.repository = opts.repository;
    this.agent = this.makeAgent();
    const c = opts.credentials;
    if (c.token) this.authorization = `Bearer ${c.token}`;
    else if (c.username !== undefined && c.password !== undefined) this.authorization = this.basic();
  }

  private makeAgent(): HttpAgent | HttpsAgent {
    const agentOpts = { keepAlive: true, maxSockets: this.opts.maxSockets, keepAliveMsecs: 10_000 };
    return this.baseUrl.startsWith("https:")
      ? new HttpsAgent({ ...agentOpts, rejectUnauthorized: !this.opts.insecure })
      : new HttpAgent(agentOpts);
  }

  /** GET /v2/, switching to HTTPS if a plain-HTTP request met a TLS server and that is allowed. */
  private async ping(): Promise<Response> {
    try {
      return await this.send("GET", "/v2/", {}, false);
    } catch (err) {
      const tls = err instanceof NetworkError && err.code === "HPE_INVALID_CONSTANT";
      if (!tls || !this.opts.tlsFallback || !this.baseUrl.startsWith("http:")) throw err;
      this.baseUrl = this.baseUrl.replace(/^http:/, "https:");
      this.agent.destroy();
      this.agent = this.makeAgent();
      this.opts.tlsFallback(`${this.baseUrl} answers in TLS: using HTTPS${this.opts.insecure ? " (without certificate checks: --insecure)" : ""}`);
      return this.send("GET", "/v2/", {}, false);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private basic(): string | undefined {
    const c = this.opts.credentials;
    if (c.username === undefined || c.password === undefined) return undefined;
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
  }

  /** `/v2/<repository>` + rest. */
  repoPath(rest: string): string {
    return `/v2/${this.repository}${rest}`;
  }

  /**
   * Checks that the registry answers and accepts our credentials (`GET /v2/`), fetching a token
   * first when it asks for one. Throws an error that says what to do.
   */
  async login(): Promise<void> {
    let res = await this.ping();
    if (res.status === 401) {
      const www = header(res, "www-authenticate") ?? "";
      const { scheme, params } = parseChallenge(www);
      if (scheme === "bearer" && params.realm && !this.opts.credentials.token) {
        this.challenge = { realm: params.realm, ...(params.service ? { service: params.service } : {}) };
        await this.fetchToken();
        res = await this.send("GET", "/v2/", {}, false);
      }
    }
    if (res.status === 401) {
      const c = this.opts.credentials;
      const given = c.token ? "the token was refused" : c.username !== undefined ? "the username or password was refused" : "it needs credentials (-u/--username with -p, --password-stdin, or --token)";
      throw new Error(`${this.baseUrl} refused to log in: ${given} (${describeResponse(res)})`);
    }
    if (res.status !== 200) throw new RegistryResponseError(`GET ${this.baseUrl}/v2/`, res);
  }

  private async fetchToken(): Promise<void> {
    if (!this.challenge) return;
    const url = new URL(this.challenge.realm);
    if (this.challenge.service) url.searchParams.set("service", this.challenge.service);
    url.searchParams.append("scope", `repository:${this.repository}:pull,push`);
    if (this.opts.mountFrom) url.searchParams.append("scope", `repository:${this.opts.mountFrom}:pull`);
    const basic = this.basic();
    const res = await this.raw("GET", url, basic ? { authorization: basic } : {}, undefined, undefined, this.opts.timeoutMs);
    if (res.status !== 200) throw new RegistryResponseError(`getting a token from ${url.origin}${url.pathname}`, res);
    let token: string | undefined;
    try {
      const json = JSON.parse(res.body.toString("utf8")) as { token?: string; access_token?: string };
      token = json.token ?? json.access_token;
    } catch {
      /* handled below */
    }
    if (!token) throw new Error(`the token server ${url.origin}${url.pathname} answered without a token`);
    this.authorization = `Bearer ${token}`;
  }

  /**
   * Sends a request to `path` (relative to the registry, or an absolute URL from a Location header).
   * A 401 while using a fetched token gets a new token and one more try.
   */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    return this.send(method, path, opts, true);
  }

  private async send(method: string, path: string, opts: RequestOptions, refresh: boolean): Promise<Response> {
    const url = new URL(path, `${this.baseUrl}/`);
    const sameOrigin = url.origin === new URL(this.baseUrl).origin;
    const headers: Record<string, string> = { "user-agent": this.opts.userAgent ?? "r2-registry-push", ...opts.headers };
    if (sameOrigin && this.authorization) headers.authorization = this.authorization;
    let res: Response;
    try {
      res = await this.raw(method, url, headers, opts.body, opts.bodyLength, opts.timeoutMs ?? this.opts.timeoutMs, opts.signal);
    } catch (err) {
      this.opts.trace?.(`${method} ${url.pathname}${url.search}${headers["content-range"] ? ` [${headers["content-range"]}]` : ""} -> ${(err as Error).message}`);
      throw err;
    }
    this.opts.trace?.(`${method} ${url.pathname}${url.search}${headers["content-range"] ? ` [${headers["content-range"]}]` : ""} -> ${res.status}${header(res, "range") ? ` Range: ${header(res, "range")}` : ""}`);
    if (res.status === 401 && refresh && this.challenge) {
      await this.fetchToken();
      return this.send(method, path, opts, false);
    }
    return res;
  }

  private raw(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Buffer | (() => Readable) | undefined,
    bodyLength: number | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const agent = url.origin === new URL(this.baseUrl).origin ? this.agent : undefined;
    const h: Record<string, string> = { ...headers };
    if (Buffer.isBuffer(body)) h["content-length"] = String(body.length);
    else if (body) h["content-length"] = String(bodyLength ?? 0);
    else if (method !== "GET" && method !== "HEAD") h["content-length"] = "0";
    return new Promise<Response>((resolve, reject) => {
      let settled = false;
      let stream: Readable | undefined;
      let requestFinished = false;
      const req = send(url, {
        method,
        headers: h,
        ...(agent ? { agent } : { rejectUnauthorized: !this.opts.insecure }),
        timeout: timeoutMs,
      });
      const fail = (err: Error & { code?: string }) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        stream?.destroy();
        req.destroy();
        const hint = err.code ? NETWORK_HINTS[err.code] : undefined;
        reject(new NetworkError(`${method} ${url.origin}${url.pathname}: ${err.message}${hint ? ` — ${hint}` : ""}`, err.code));
      };
      const onAbort = () => fail(Object.assign(new Error("aborted"), { code: "ABORTED" }));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      req.on("timeout", () => fail(Object.assign(new Error(`no activity for ${Math.round(timeoutMs / 1000)} s`), { code: "ETIMEDOUT" })));
      let answered = false;
      // Writing the rest of a body the server already answered may fail (EPIPE): the answer counts.
      req.on("error", (err) => {
        if (!answered) fail(err);
      });
      req.on("finish", () => (requestFinished = true));
      req.on("response", (res) => {
        answered = true;
        res.on("close", () => fail(new Error("the connection closed in the middle of the answer")));
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on("data", (c: Buffer) => {
          if (kept < 1 << 20) {
            chunks.push(c);
            kept += c.length;
          }
        });
        res.on("error", fail);
        res.on("end", () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener("abort", onAbort);
          // An answer that came before the whole body was sent: this connection cannot be reused.
          if (!requestFinished) {
            stream?.destroy();
            req.destroy();
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), url: url.toString() });
        });
      });
      if (typeof body === "function") {
        stream = body();
        stream.on("error", (err) => fail(Object.assign(new Error(`reading the blob: ${err.message}`), { code: "ESOURCE" })));
        stream.pipe(req);
      } else {
        req.end(body);
      }
    });
  }
}
