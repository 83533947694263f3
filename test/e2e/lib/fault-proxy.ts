/**
 * A small HTTP proxy for the push tool's tests, between the tool (plain HTTP on 127.0.0.1) and a
 * registry (HTTPS, self-signed). It logs every request (method, path, Content-Range, bytes
 * forwarded, status), and can inject faults:
 *  - drop the connection in the middle of one PATCH (client side and registry side),
 *  - refuse chosen requests with a status of its choice,
 *  - demand a Bearer token, handing one out at /token for the right Basic credentials (a
 *    distribution-style token server), and pass requests on with Basic credentials.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";

export interface ProxyLogEntry {
  method: string;
  /** Path and query, as the client sent them. */
  url: string;
  contentRange?: string;
  contentLength?: number;
  authorization?: string;
  /** Request body bytes passed on to the registry. */
  forwarded: number;
  status?: number;
  /** The `Range` header of the answer. */
  range?: string;
  /** The proxy cut this request off. */
  dropped?: boolean;
  /** The proxy answered itself. */
  refused?: boolean;
}

export interface FaultProxyOptions {
  /** "https://127.0.0.1:PORT". */
  upstream: string;
  /** Drop the first PATCH whose Content-Length is at least `minLength`, after `afterBytes` of its body. */
  dropPatch?: { minLength: number; afterBytes: number };
  /** Answer matching requests with this status instead of forwarding them. */
  refuse?: (method: string, url: string) => number | undefined;
  /**
   * Require `Bearer <token>`; issue it at /token for these Basic credentials, and pass requests on
   * to the registry with its own Basic credentials (`upstream`).
   */
  bearer?: { token: string; username: string; password: string; upstream: { username: string; password: string } };
}

export interface FaultProxy {
  url: string;
  host: string;
  log: ProxyLogEntry[];
  close(): Promise<void>;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(opts.upstream);
  const log: ProxyLogEntry[] = [];
  let dropped = false;
  let self = "";

  const b64 = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`;
  const basic = opts.bearer ? b64(opts.bearer.username, opts.bearer.password) : undefined;
  const upstreamBasic = opts.bearer ? b64(opts.bearer.upstream.username, opts.bearer.upstream.password) : undefined;

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const entry: ProxyLogEntry = {
      method: req.method ?? "GET",
      url: req.url ?? "/",
      forwarded: 0,
      ...(req.headers["content-range"] ? { contentRange: String(req.headers["content-range"]) } : {}),
      ...(req.headers["content-length"] ? { contentLength: Number(req.headers["content-length"]) } : {}),
      ...(req.headers.authorization ? { authorization: String(req.headers.authorization).split(" ")[0] } : {}),
    };
    log.push(entry);
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      entry.status = status;
      entry.refused = true;
      req.resume();
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };

    if (opts.bearer) {
      if (entry.url.startsWith("/token")) {
        if (req.headers.authorization !== basic) return answer(401, { errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] });
        return answer(200, { token: opts.bearer.token, access_token: opts.bearer.token, expires_in: 300 });
      }
      if (req.headers.authorization !== `Bearer ${opts.bearer.token}`) {
        return answer(401, { errors: [{ code: "UNAUTHORIZED", message: "token required" }] }, {
          "www-authenticate": `Bearer realm="${self}/token",service="fault-proxy",scope="repository:x:pull"`,
        });
      }
    }
    const refusal = opts.refuse?.(entry.method, entry.url);
    if (refusal) return answer(refusal, { errors: [{ code: "UNKNOWN", message: "refused by the test proxy" }] });

    const headers = { ...req.headers, host: upstream.host };
    if (upstreamBasic) headers.authorization = upstreamBasic;
    const up = httpsRequest(
      { host: upstream.hostname, port: upstream.port, method: entry.method, path: entry.url, headers, rejectUnauthorized: false },
      (upRes) => {
        entry.status = upRes.statusCode;
        if (upRes.headers.range) entry.range = String(upRes.headers.range);
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", (err) => {
      if (entry.dropped) return;
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`proxy: ${err.message}`);
    });

    const drop = opts.dropPatch;
    const dropThis = !dropped && drop && entry.method === "PATCH" && (entry.contentLength ?? 0) >= drop.minLength;
    if (dropThis) dropped = true;
    req.on("data", (chunk: Buffer) => {
      if (entry.dropped) return;
      if (dropThis && entry.forwarded + chunk.length >= drop!.afterBytes) {
        const part = chunk.subarray(0, drop!.afterBytes - entry.forwarded);
        entry.forwarded += part.length;
        entry.dropped = true;
        // Let what was forwarded reach the registry, then cut both sides.
        up.write(part, () => {
          setTimeout(() => {
            up.destroy();
            req.socket.destroy();
          }, 200);
        });
        return;
      }
      entry.forwarded += chunk.length;
      if (!up.write(chunk)) {
        req.pause();
        up.once("drain", () => req.resume());
      }
    });
    req.on("end", () => {
      if (!entry.dropped) up.end();
    });
    req.on("error", () => up.destroy());
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  self = `http://127.0.0.1:${port}`;
  return {
    url: self,
    host: `127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
