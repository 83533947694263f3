/**
 * The least a Worker can do to take an upload into R2: the same 16 MiB multipart parts as
 * r2-registry, with no hashing, no sessions and no checks. `pnpm bench baseline` runs it beside
 * r2-registry to show what the local R2 simulator itself costs in time and memory.
 *
 * POST /upload      → 202, Location: /upload/<uploadId>?part=1
 * PATCH <location>  → 202, Location: the next part number; the body is cut into 16 MiB parts
 *                     (send multiples of 16 MiB but for the last), answers their etags as JSON
 * PUT <location>    → 201 once the parts (the JSON of every PATCH, concatenated) are completed
 * GET /blob         → the object, streamed from R2
 * PUT /object…      → one `bucket.put(<path>, request.body)` of a body with a Content-Length:
 *                     the floor of a streamed write (`pnpm bench big-layer`), e.g. PUT /object-2
 * GET /object…      → that object, streamed from R2: the floor of a read
 */
const PART = 16 * 1024 * 1024;

interface Env {
  BUCKET: R2Bucket;
}

async function patch(request: Request, env: Env, url: URL): Promise<Response> {
  const id = decodeURIComponent(url.pathname.slice("/upload/".length));
  let part = Number(url.searchParams.get("part"));
  const upload = env.BUCKET.resumeMultipartUpload("baseline", id);
  const reader = request.body!.getReader();
  let buffer = new Uint8Array(PART);
  let filled = 0;
  const parts: R2UploadedPart[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    for (let offset = 0; value && offset < value.length; ) {
      const n = Math.min(PART - filled, value.length - offset);
      buffer.set(value.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === PART) {
        parts.push(await upload.uploadPart(part++, buffer));
        buffer = new Uint8Array(PART);
        filled = 0;
      }
    }
    if (done) break;
  }
  if (filled > 0) parts.push(await upload.uploadPart(part++, buffer.subarray(0, filled)));
  return Response.json(parts, { status: 202, headers: { location: `/upload/${encodeURIComponent(id)}?part=${part}` } });
}

async function complete(request: Request, env: Env, url: URL): Promise<Response> {
  const id = decodeURIComponent(url.pathname.slice("/upload/".length));
  const parts = (await request.json()) as R2UploadedPart[];
  await env.BUCKET.resumeMultipartUpload("baseline", id).complete(parts);
  return new Response(null, { status: 201 });
}

async function object(request: Request, env: Env, key: string): Promise<Response> {
  if (request.method === "PUT") {
    const stored = await env.BUCKET.put(key, request.body);
    return Response.json({ size: stored?.size }, { status: 201 });
  }
  const found = await env.BUCKET.get(key);
  return found ? new Response(found.body, { headers: { "content-length": String(found.size) } }) : new Response("not found", { status: 404 });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/object")) return object(request, env, url.pathname.slice(1));
    if (request.method === "POST") {
      const upload = await env.BUCKET.createMultipartUpload("baseline");
      return new Response(null, { status: 202, headers: { location: `/upload/${encodeURIComponent(upload.uploadId)}?part=1` } });
    }
    if (request.method === "PATCH") return patch(request, env, url);
    if (request.method === "PUT") return complete(request, env, url);
    if (request.method === "GET" && url.pathname === "/blob") {
      const object = await env.BUCKET.get("baseline");
      return object ? new Response(object.body, { headers: { "content-length": String(object.size) } }) : new Response("not found", { status: 404 });
    }
    return new Response("not found", { status: 404 });
  },
};
