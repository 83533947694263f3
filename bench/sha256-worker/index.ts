/**
 * Hashes bytes inside workerd for `pnpm bench sha256`, with the registry's resumable WebAssembly
 * SHA-256 or with workerd's native `crypto.DigestStream`. workerd's clocks stand still while code
 * runs, so the caller times each request from outside.
 *
 * GET /generated?engine=wasm|digeststream|none&mib=256[&span=100]
 *       hashes that many MiB made in the Worker (one random 64 KiB chunk, over and over); with
 *       `span`, the wasm state is saved as JSON and restored every that many MiB, as when an
 *       upload spans several requests
 * POST /body?engine=wasm|digeststream|none
 *       hashes the request body piece by piece as it arrives, read as an upload PATCH reads it
 * Both answer `{"digest": "<hex>", "bytes": n}` (`none` only counts the bytes).
 */
import { Sha256 } from "../../src/crypto/sha256";
import { byteReader } from "../../src/streams";

type Engine = "wasm" | "digeststream" | "none";

interface Hasher {
  update(chunk: Uint8Array): Promise<void> | void;
  finish(): Promise<string> | string;
}

function hasher(engine: Engine, spanBytes = 0): Hasher {
  if (engine === "wasm") {
    let h = new Sha256();
    let sinceSave = 0;
    return {
      update: (chunk) => {
        h.update(chunk);
        sinceSave += chunk.byteLength;
        if (spanBytes > 0 && sinceSave >= spanBytes) {
          h = Sha256.restore(JSON.parse(JSON.stringify(h.save())));
          sinceSave = 0;
        }
      },
      finish: () => h.digestHex(),
    };
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
    const h = hasher(engine, Number(url.searchParams.get("span") ?? 0) * 2 ** 20);
    let bytes = 0;
    if (url.pathname === "/generated") {
      const chunk = crypto.getRandomValues(new Uint8Array(65536));
      const chunks = Number(url.searchParams.get("mib") ?? 256) * 16;
      for (let i = 0; i < chunks; i++) {
        await h.update(chunk);
        bytes += chunk.byteLength;
      }
    } else if (url.pathname === "/body" && request.body) {
      const reader = byteReader(request.body);
      for (let piece = await reader.read(); piece; piece = await reader.read()) {
        await h.update(piece);
        bytes += piece.byteLength;
      }
    } else {
      return new Response("not found\n", { status: 404 });
    }
    return Response.json({ digest: await h.finish(), bytes });
  },
};
