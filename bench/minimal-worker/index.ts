/**
 * The least a Worker can do to answer the small requests of a pull, for `pnpm bench requests`
 * to show what wrangler dev and workerd cost by themselves: whatever rate this Worker reaches is
 * the ceiling of the stack, and the gap to r2-registry's is the registry's own work.
 *
 * GET|HEAD /v2/                           → 200 `{}` after a plain string compare of the Basic header
 * GET|HEAD /v2/<name>/manifests/<tag>     → one `bucket.get` / `bucket.head` of `<name>/manifests/<tag>`
 * HEAD /v2/<name>/blobs/<digest>          → one `bucket.head` of `<name>/blobs/<digest>`
 * PUT /v2/<key>                           → stores the body under `<key>` (the benchmark's seeding;
 *                                           Content-Type and Docker-Content-Digest kept as metadata)
 */
interface Env {
  BUCKET: R2Bucket;
  USERNAME: string;
  PASSWORD: string;
}

const API_VERSION = { "Docker-Distribution-API-Version": "registry/2.0" };

function headersOf(object: R2Object): Headers {
  return new Headers({
    ...API_VERSION,
    "Content-Type": object.httpMetadata?.contentType ?? "application/octet-stream",
    "Docker-Content-Digest": object.customMetadata?.digest ?? "",
    "Content-Length": String(object.size),
  });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.headers.get("Authorization") !== `Basic ${btoa(`${env.USERNAME}:${env.PASSWORD}`)}`) {
      return new Response(null, { status: 401, headers: { ...API_VERSION, "WWW-Authenticate": 'Basic realm="minimal"' } });
    }
    const path = new URL(request.url).pathname;
    if (path === "/v2/" && (request.method === "GET" || request.method === "HEAD")) {
      return new Response(request.method === "HEAD" ? null : "{}", {
        headers: { ...API_VERSION, "Content-Type": "application/json; charset=utf-8", "Content-Length": "2" },
      });
    }
    const key = path.slice("/v2/".length);
    if (!path.startsWith("/v2/") || !/\/(manifests|blobs)\/[^/]+$/.test(key)) return new Response(null, { status: 404 });
    if (request.method === "PUT") {
      await env.BUCKET.put(key, await request.arrayBuffer(), {
        httpMetadata: { contentType: request.headers.get("Content-Type") ?? "application/octet-stream" },
        customMetadata: { digest: request.headers.get("Docker-Content-Digest") ?? "" },
      });
      return new Response(null, { status: 201 });
    }
    if (request.method === "HEAD") {
      const object = await env.BUCKET.head(key);
      return object ? new Response(null, { headers: headersOf(object) }) : new Response(null, { status: 404 });
    }
    if (request.method === "GET" && key.includes("/manifests/")) {
      const object = await env.BUCKET.get(key);
      return object ? new Response(object.body, { headers: headersOf(object) }) : new Response(null, { status: 404 });
    }
    return new Response(null, { status: 405 });
  },
};
