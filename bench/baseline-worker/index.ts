/**
 * The least a Worker can do to take an upload into R2: the same 16 MiB multipart parts as
 * r2-registry, with no hashing, no sessions and no checks. `pnpm bench baseline` runs it beside
 * r2-registry to show what the local R2 simulator itself costs in time and memory.
 *
 * POST /upload            → 202, Location: /upload/<uploadId>?part=1
 * PATCH <location>        → 202, Location: the next part number (the body is cut into parts)
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
  for (;;) {
    const { done, value } = await reader.read();
    for (let offset = 0; value && offset < value.length; ) {
      const n = Math.min(PART - filled, value.length - offset);
      buffer.set(value.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === PART) {
        await upload.uploadPart(part++, buffer);
        buffer = new Uint8Array(PART);
        filled = 0;
      }
    }
    if (done) break;
  }
  if (filled > 0) await upload.uploadPart(part++, buffer.subarray(0, filled));
  return new Response(null, { status: 202, headers: { location: `/upload/${encodeURIComponent(id)}?part=${part}` } });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "POST") {
      const upload = await env.BUCKET.createMultipartUpload("baseline");
      return new Response(null, { status: 202, headers: { location: `/upload/${encodeURIComponent(upload.uploadId)}?part=1` } });
    }
    if (request.method === "PATCH") return patch(request, env, url);
    return new Response("not found", { status: 404 });
  },
};
