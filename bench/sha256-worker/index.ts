/**
 * Hashes bytes inside workerd for `pnpm bench sha256`, with the registry's resumable WebAssembly
 * SHA-256 or with workerd's native `crypto.DigestStream`. workerd's clocks stand still while code
 * runs, so the caller times each request from outside.
 *
 * GET /generated?engine=wasm|digeststream|none&mib=256
 *       hashes that many MiB made in the Worker (one random 64 KiB chunk, over and over)
 * POST /body?engine=wasm|digeststream|none
 *       hashes the request body chunk by chunk as it arrives, as an upload PATCH does
 * Both answer `{"digest": "<hex>", "bytes": n}` (`none` only counts the bytes).
 */
import { Sha256 } from "../../src/crypto/sha256";

type Engine = "wasm" | "digeststream" | "none";

interface Hasher {
  update(chunk: Uint8Array): Promise<void> | void;
  finish(): Promise<string> | string;
}

function hasher(engine: Engine): Hasher {
  if (engine === "wasm") {
    const h = new Sha256();
    return { update: (chunk) => void h.update(chunk), finish: () => h.digestHex() };
  }
  if (engine === "digeststream") {
    const stream = new crypto.DigestStream("SHA-256");
    const writer = stream.getWriter();
    return {
      update: (chunk) => writer.write(chunk),
      async finish() {
        await writer.close();
        return [...new Uint8Array(await stream.digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
      },
    };
  }
  return { update: () => {}, finish: () => "" };
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const engine = (url.searchParams.get("engine") ?? "wasm") as Engine;
    if (!["wasm", "digeststream", "none"].includes(engine)) return new Response("unknown engine\n", { status: 400 });
    const h = hasher(engine);
    let bytes = 0;
    if (url.pathname === "/generated") {
      const chunk = crypto.getRandomValues(new Uint8Array(65536));
      const chunks = Number(url.searchParams.get("mib") ?? 256) * 16;
      for (let i = 0; i < chunks; i++) {
        await h.update(chunk);
        bytes += chunk.byteLength;
      }
    } else if (url.pathname === "/body" && request.body) {
      const reader = request.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await h.update(value);
        bytes += value.byteLength;
      }
    } else {
      return new Response("not found\n", { status: 404 });
    }
    return Response.json({ digest: await h.finish(), bytes });
  },
};
