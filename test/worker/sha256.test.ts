/**
 * The resumable SHA-256 (src/crypto/sha256.ts, WebAssembly inside workerd): known answers, random
 * data at random split points against WebCrypto, save/restore (through JSON) at random points,
 * states saved by the earlier pure-JS implementation, and interleaved hashers.
 */
import { describe, expect, it } from "vitest";
import { Sha256, type Sha256State } from "../../src/crypto/sha256";
import { prng, type Rng } from "../lib/prng";

const text = (s: string) => new TextEncoder().encode(s);

async function webCrypto(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomBytes(rng: Rng, n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = rng.int(256);
  return bytes;
}

/** Sorted cut points in [0, n], with 0 and n, some of them close together. */
function cuts(rng: Rng, n: number, count: number): number[] {
  const points = [0, n];
  for (let i = 0; i < count; i++) {
    const p = rng.int(n + 1);
    points.push(p, Math.min(n, p + rng.int(70)));
  }
  return points.sort((a, b) => a - b);
}

describe("Sha256 known answers", () => {
  const vectors: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["abc", text("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    [
      "448 bits",
      text("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ],
    [
      "896 bits",
      text(
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
      ),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ],
    ["a million a", new Uint8Array(1_000_000).fill(0x61), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"],
  ];
  for (const [name, data, expected] of vectors) {
    it(name, () => {
      expect(new Sha256().update(data).digestHex()).toBe(expected);
      // Byte by byte for the short ones, in 1000-byte pieces for the long one.
      const step = data.byteLength > 1000 ? 1000 : 1;
      const h = new Sha256();
      for (let i = 0; i < data.byteLength; i += step) h.update(data.subarray(i, i + step));
      expect(h.length).toBe(data.byteLength);
      expect(h.digestHex()).toBe(expected);
    });
  }
});

describe("Sha256 against WebCrypto", () => {
  it("hashes random data split at random points", async () => {
    const rng = prng(1);
    for (let round = 0; round < 40; round++) {
      // Mostly small, some crossing the 64 KiB input area more than once.
      const n = rng.chance(0.25) ? 65536 * 2 + rng.int(200_000) : rng.int(5000);
      const data = randomBytes(rng, n);
      const points = cuts(rng, n, rng.int(8));
      const h = new Sha256();
      for (let i = 1; i < points.length; i++) h.update(data.subarray(points[i - 1], points[i]));
      expect(h.length).toBe(n);
      expect(h.digestHex(), `round ${round}, ${n} bytes, cut at ${points.join(",")}`).toBe(await webCrypto(data));
    }
  });

  it("hashes every length around the block and input-area boundaries", async () => {
    const data = randomBytes(prng(2), 65536 + 200);
    for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 65535 - 64, 65535, 65536, 65537, 65536 + 63, 65536 + 64, 65536 + 200]) {
      const whole = data.subarray(0, n);
      expect(new Sha256().update(whole).digestHex(), `${n} bytes`).toBe(await webCrypto(whole));
    }
  });
});

describe("Sha256 save and restore", () => {
  it("resumes at random points, across JSON", async () => {
    const rng = prng(3);
    for (let round = 0; round < 30; round++) {
      const n = rng.chance(0.3) ? 65536 + rng.int(150_000) : rng.int(3000);
      const data = randomBytes(rng, n);
      const points = cuts(rng, n, 1 + rng.int(6));
      let h = new Sha256();
      for (let i = 1; i < points.length; i++) {
        h.update(data.subarray(points[i - 1], points[i]));
        const saved = JSON.parse(JSON.stringify(h.save())) as Sha256State;
        expect(saved.length).toBe(points[i]);
        expect(atob(saved.tail).length).toBe(points[i]! % 64);
        h = Sha256.restore(saved);
      }
      expect(h.digestHex(), `round ${round}, cut at ${points.join(",")}`).toBe(await webCrypto(data));
    }
  });

  it("restores a state saved by the earlier pure-JS implementation", async () => {
    // 100 bytes (i * 7 + 3) & 255 hashed by the pure-JS Sha256 this replaced, its save() output.
    const data = new Uint8Array(300).map((_, i) => (i * 7 + 3) & 255);
    const old: Sha256State = {
      h: [4023556931, 1868819186, 1156946069, 532380815, 709983015, 3523304745, 1368755483, 1561509703],
      tail: "w8rR2N/m7fT7AgkQFx4lLDM6QUhPVl1ka3J5gIeOlZyjqrG4",
      length: 100,
    };
    expect(JSON.parse(JSON.stringify(new Sha256().update(data.subarray(0, 100)).save()))).toEqual(old);
    const h = Sha256.restore(old);
    expect(h.length).toBe(100);
    h.update(data.subarray(100));
    expect(h.digestHex()).toBe("04773f8726c81cafcfa1a09a82664b98b00d2021031a1715bca1154f2dad3472");
    expect(await webCrypto(data)).toBe("04773f8726c81cafcfa1a09a82664b98b00d2021031a1715bca1154f2dad3472");
  });

  it("keeps a restored copy independent of the original", async () => {
    const h = new Sha256().update(text("hello "));
    const copy = Sha256.restore(h.save());
    h.update(text("world"));
    copy.update(text("there"));
    expect(h.digestHex()).toBe("b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    expect(copy.digestHex()).toBe(await webCrypto(text("hello there")));
  });
});

describe("Sha256 interleaved", () => {
  it("keeps two hashers apart when their updates alternate", async () => {
    const rng = prng(4);
    const a = randomBytes(rng, 300_000);
    const b = randomBytes(rng, 250_000);
    const ha = new Sha256();
    const hb = new Sha256();
    let pa = 0;
    let pb = 0;
    while (pa < a.length || pb < b.length) {
      const na = Math.min(a.length - pa, rng.int(70_000));
      ha.update(a.subarray(pa, pa + na));
      pa += na;
      const nb = Math.min(b.length - pb, rng.int(70_000));
      hb.update(b.subarray(pb, pb + nb));
      pb += nb;
    }
    expect(ha.digestHex()).toBe(await webCrypto(a));
    expect(hb.digestHex()).toBe(await webCrypto(b));
  });

  it("keeps many concurrent hashers apart across awaits", async () => {
    const rng = prng(5);
    const inputs = Array.from({ length: 8 }, () => randomBytes(rng, 10_000 + rng.int(100_000)));
    const digests = await Promise.all(
      inputs.map(async (data, i) => {
        const h = new Sha256();
        const split = prng(100 + i);
        for (let p = 0; p < data.length; ) {
          const n = Math.min(data.length - p, 1 + split.int(20_000));
          h.update(data.subarray(p, p + n));
          p += n;
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
        return h.digestHex();
      }),
    );
    for (const [i, data] of inputs.entries()) expect(digests[i]).toBe(await webCrypto(data));
  });
});
