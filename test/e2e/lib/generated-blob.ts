/**
 * Blobs of any size made up on the fly, so a test can push more bytes than it wants on disk or in
 * memory: a random 1 MiB block repeated, each repetition stamped with its index in its first
 * 8 bytes (so no two MiB are alike and a misplaced part shows). Any range can be recomputed to
 * check what the registry serves back.
 */
import { createHash, randomBytes } from "node:crypto";
import { describeResponse, headerValue, type RegistryClient } from "./http.ts";

const BLOCK = 2 ** 20;

export class GeneratedBlob {
  readonly size: number;
  private readonly base = randomBytes(BLOCK);

  constructor(size: number) {
    this.size = size;
  }

  /**
   * The bytes from `start`, `length` of them.
   *
   * @example
   * const blob = new GeneratedBlob(6 * 2 ** 30);
   * blob.bytes(5 * 2 ** 30, 16); // 16 bytes at the 5 GiB mark
   */
  bytes(start: number, length: number): Buffer {
    const end = Math.min(start + length, this.size);
    const out = Buffer.allocUnsafe(Math.max(0, end - start));
    for (let offset = start; offset < end; ) {
      const inBlock = offset % BLOCK;
      const n = Math.min(BLOCK - inBlock, end - offset);
      this.base.copy(out, offset - start, inBlock, inBlock + n);
      offset += n;
    }
    const stamp = Buffer.alloc(8);
    for (let block = Math.floor(start / BLOCK) * BLOCK; block < end; block += BLOCK) {
      stamp.writeBigUInt64BE(BigInt(block / BLOCK));
      for (let i = 0; i < 8; i++) if (block + i >= start && block + i < end) out[block + i - start] = stamp[i]!;
    }
    return out;
  }
}

export interface ChunkedUpload {
  digest: string;
  /** Seconds spent sending the chunks, and answering the closing PUT. */
  patchSeconds: number;
  putSeconds: number;
  chunks: number;
}

/**
 * Pushes a generated blob to `repo` the way a chunking client does: POST, then PATCHes of at most
 * `chunk` bytes with `Content-Range`, then the closing PUT with the digest (hashed on the way).
 *
 * @example
 * const up = await pushGenerated(reg.client, "big/huge", new GeneratedBlob(5.1 * 2 ** 30), 100_000_000);
 */
export async function pushGenerated(client: RegistryClient, repo: string, blob: GeneratedBlob, chunk: number): Promise<ChunkedUpload> {
  const start = await client.request("POST", `/v2/${repo}/blobs/uploads/`);
  if (start.status !== 202) throw new Error(describeResponse("POST", repo, start));
  let location = headerValue(start, "location")!;
  const hash = createHash("sha256");
  const began = performance.now();
  let chunks = 0;
  for (let offset = 0; offset < blob.size; offset += chunk) {
    const body = blob.bytes(offset, chunk);
    hash.update(body);
    const path = new URL(location, client.baseUrl);
    const res = await client.request("PATCH", path.pathname + path.search, {
      "content-type": "application/octet-stream",
      "content-range": `${offset}-${offset + body.length - 1}`,
    }, body);
    if (res.status !== 202) throw new Error(describeResponse("PATCH", `${offset}-${offset + body.length - 1}`, res));
    location = headerValue(res, "location")!;
    chunks++;
  }
  const patchSeconds = (performance.now() - began) / 1000;
  const digest = `sha256:${hash.digest("hex")}`;
  const finish = new URL(location, client.baseUrl);
  finish.searchParams.set("digest", digest);
  const closing = performance.now();
  const done = await client.request("PUT", finish.pathname + finish.search);
  if (done.status !== 201) throw new Error(describeResponse("PUT", finish.toString(), done));
  return { digest, patchSeconds, putSeconds: (performance.now() - closing) / 1000, chunks };
}
