import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { byteReader, READ_SIZE } from "../../src/streams";
import { bytesOf, sha256 } from "./helpers";

const MiB = 1024 * 1024;

/** A byte stream of `bytes`, as workerd makes request and R2 bodies (BYOB readers work on it). */
function byteStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new Response(bytes).body!;
}

describe("reading bodies in pieces whose memory is read into again", () => {
  it("a piece written to a FixedLengthStream is taken once write() resolves: its memory can be filled again", async () => {
    const { readable, writable } = new FixedLengthStream(2 * MiB);
    const writer = writable.getWriter();
    // A slow reader: whatever the writer does to a piece after its write resolved must not show.
    const received = (async () => {
      const reader = readable.getReader();
      const chunks: Uint8Array[] = [];
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return chunks;
        chunks.push(value);
      }
    })();
    const piece = new Uint8Array(MiB).fill(0xaa);
    await writer.write(piece);
    piece.fill(0x55);
    await writer.write(piece);
    piece.fill(0x00);
    await writer.close();
    const bytes = new Uint8Array(await new Blob(await received).arrayBuffer());
    expect(bytes.byteLength).toBe(2 * MiB);
    expect(bytes.subarray(0, MiB).every((b) => b === 0xaa)).toBe(true);
    expect(bytes.subarray(MiB).every((b) => b === 0x55)).toBe(true);
  });

  it("R2 stores what each piece held when it was written, though the pieces share one buffer", async () => {
    const source = bytesOf(5 * MiB + 12_345, 7);
    const { readable, writable } = new FixedLengthStream(source.byteLength);
    const writer = writable.getWriter();
    const put = env.REGISTRY.put("streams-test/reused", readable);
    const piece = new Uint8Array(MiB);
    for (let at = 0; at < source.byteLength; at += MiB) {
      const part = source.subarray(at, at + MiB);
      piece.set(part);
      await writer.write(piece.subarray(0, part.byteLength));
    }
    await writer.close();
    await put;
    const stored = new Uint8Array(await (await env.REGISTRY.get("streams-test/reused"))!.arrayBuffer());
    expect(await sha256(stored)).toBe(await sha256(source));
  });

  it("a byte reader that is given its pieces back reads into them again, and reads the whole stream byte for byte", async () => {
    const source = bytesOf(3 * READ_SIZE + 777, 3);
    const reader = byteReader(byteStream(source));
    const copy = new Uint8Array(source.byteLength);
    let at = 0;
    let given: Uint8Array | undefined;
    for (let piece = await reader.read(); piece; piece = await reader.read()) {
      // The piece given back last was handed to this read: its memory moved (detached) with it.
      if (given) expect(given.byteLength).toBe(0);
      copy.set(piece, at);
      at += piece.byteLength;
      reader.recycle(piece);
      given = piece;
    }
    expect(at).toBe(source.byteLength);
    expect(await sha256(copy)).toBe(await sha256(source));
  });
});
