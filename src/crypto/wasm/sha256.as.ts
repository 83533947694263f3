/**
 * The SHA-256 compression function (FIPS 180-4), in AssemblyScript, compiled to `sha256.wasm` by
 * `pnpm build:wasm` (scripts/build-wasm.mjs). The JS side (`../sha256.ts`) does everything else:
 * each hasher keeps its own state and loads it into `STATE` before calling {@link compress}, then
 * reads it back, so one instance serves any number of interleaved hashers.
 *
 * Memory layout (one linear memory of two pages, exported as `memory`):
 * - `STATE`: the eight 32-bit chaining words H0..H7, as little-endian u32s;
 * - `INPUT`: {@link INPUT_SIZE} bytes of message, whole 64-byte blocks.
 *
 * Speed: the 64 rounds are unrolled, with the eight working variables renamed instead of moved;
 * the message schedule runs four words at a time in v128 registers (SIMD), so the scalar units
 * only do the rounds; Maj reuses the previous round's a ^ b. Each round adds its terms in the order
 * they are ready, h + K + W first and Σ1(e) last, so that e's path to the next round's e is Σ1 and
 * two additions, and a's is one addition after T1 (5–10 % faster than adding left to right).
 *
 * @example
 * // from JS, after instantiating: hash one block written at INPUT
 * new Int32Array(exports.memory.buffer, exports.STATE.value, 8).set(h);
 * new Uint8Array(exports.memory.buffer, exports.INPUT.value, 64).set(block);
 * exports.compress(1);
 */

/** Bytes of message the input area holds (a multiple of 64). */
export const INPUT_SIZE: i32 = 65536;
/** Where the eight chaining words live. */
export const STATE: usize = memory.data(32, 16);
/** Where the message blocks to compress are written. */
export const INPUT: usize = memory.data(INPUT_SIZE, 16);

// The functions of FIPS 180-4 §4.1.2 (Maj is written out in the rounds).
// @ts-ignore: decorator
@inline function Sigma0(x: u32): u32 {
  return rotr<u32>(x, 2) ^ rotr<u32>(x, 13) ^ rotr<u32>(x, 22);
}
// @ts-ignore: decorator
@inline function Sigma1(x: u32): u32 {
  return rotr<u32>(x, 6) ^ rotr<u32>(x, 11) ^ rotr<u32>(x, 25);
}
// @ts-ignore: decorator
@inline function ch(x: u32, y: u32, z: u32): u32 {
  return z ^ (x & (y ^ z));
}
// σ0 and σ1 of four schedule words at once.
// @ts-ignore: decorator
@inline function sigma0x4(x: v128): v128 {
  const rotations = v128.xor(v128.xor(i32x4.shr_u(x, 7), i32x4.shl(x, 25)), v128.xor(i32x4.shr_u(x, 18), i32x4.shl(x, 14)));
  return v128.xor(rotations, i32x4.shr_u(x, 3));
}
// @ts-ignore: decorator
@inline function sigma1x4(x: v128): v128 {
  const rotations = v128.xor(v128.xor(i32x4.shr_u(x, 17), i32x4.shl(x, 15)), v128.xor(i32x4.shr_u(x, 19), i32x4.shl(x, 13)));
  return v128.xor(rotations, i32x4.shr_u(x, 10));
}

/** Four big-endian message words at `p`. */
// @ts-ignore: decorator
@inline function words(p: usize): v128 {
  const v = v128.load(p);
  return i8x16.shuffle(v, v, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
}

/**
 * W[t..t+3] from w0 = W[t-16..t-13], w1, w2 and w3 = W[t-4..t-1]. σ1 needs W[t-2] and W[t-1],
 * so it is added in two halves: lanes 0 and 1 from w3, then lanes 2 and 3 from those two.
 */
// @ts-ignore: decorator
@inline function schedule(w0: v128, w1: v128, w2: v128, w3: v128): v128 {
  const zero = i32x4.splat(0);
  let w = i32x4.add(i32x4.add(w0, sigma0x4(i32x4.shuffle(w0, w1, 1, 2, 3, 4))), i32x4.shuffle(w2, w3, 1, 2, 3, 4));
  w = i32x4.add(w, sigma1x4(i32x4.shuffle(w3, zero, 2, 3, 4, 4)));
  return i32x4.add(w, sigma1x4(i32x4.shuffle(zero, w, 0, 0, 4, 5)));
}

/**
 * Runs the compression function over `blocks` 64-byte blocks at `INPUT`, updating `STATE`.
 *
 * @example
 * exports.compress(1024); // the whole 64 KiB input area
 */
export function compress(blocks: i32): void {
  let a = load<u32>(STATE, 0), b = load<u32>(STATE, 4), c = load<u32>(STATE, 8), d = load<u32>(STATE, 12);
  let e = load<u32>(STATE, 16), f = load<u32>(STATE, 20), g = load<u32>(STATE, 24), h = load<u32>(STATE, 28);
  // t: T1 of a round; m: a ^ b of this round, mp: of the previous one (its b ^ c), for
  // Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)).
  let t: u32, m: u32, mp: u32;
  let p = INPUT;
  const end = INPUT + (<usize>blocks << 6);
  while (p < end) {
    const a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g, h0 = h;
    mp = b ^ c;
    // x0..x3: the last 16 schedule words; y: the next four, plus their round constants.
    let y: v128;
    let x0 = words(p);
    let x1 = words(p + 16);
    let x2 = words(p + 32);
    let x3 = words(p + 48);
    // rounds 0..3
    y = i32x4.add(x0, i32x4(0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 4..7
    y = i32x4.add(x1, i32x4(0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 8..11
    y = i32x4.add(x2, i32x4(0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 12..15
    y = i32x4.add(x3, i32x4(0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 16..19
    x0 = schedule(x0, x1, x2, x3);
    y = i32x4.add(x0, i32x4(0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 20..23
    x1 = schedule(x1, x2, x3, x0);
    y = i32x4.add(x1, i32x4(0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 24..27
    x2 = schedule(x2, x3, x0, x1);
    y = i32x4.add(x2, i32x4(0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 28..31
    x3 = schedule(x3, x0, x1, x2);
    y = i32x4.add(x3, i32x4(0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 32..35
    x0 = schedule(x0, x1, x2, x3);
    y = i32x4.add(x0, i32x4(0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 36..39
    x1 = schedule(x1, x2, x3, x0);
    y = i32x4.add(x1, i32x4(0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 40..43
    x2 = schedule(x2, x3, x0, x1);
    y = i32x4.add(x2, i32x4(0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 44..47
    x3 = schedule(x3, x0, x1, x2);
    y = i32x4.add(x3, i32x4(0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 48..51
    x0 = schedule(x0, x1, x2, x3);
    y = i32x4.add(x0, i32x4(0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 52..55
    x1 = schedule(x1, x2, x3, x0);
    y = i32x4.add(x1, i32x4(0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    // rounds 56..59
    x2 = schedule(x2, x3, x0, x1);
    y = i32x4.add(x2, i32x4(0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208));
    t = Sigma1(e) + (ch(e, f, g) + (h + <u32>i32x4.extract_lane(y, 0))); d += t; m = a ^ b; h = t + (Sigma0(a) + (b ^ (m & mp))); mp = m;
    t = Sigma1(d) + (ch(d, e, f) + (g + <u32>i32x4.extract_lane(y, 1))); c += t; m = h ^ a; g = t + (Sigma0(h) + (a ^ (m & mp))); mp = m;
    t = Sigma1(c) + (ch(c, d, e) + (f + <u32>i32x4.extract_lane(y, 2))); b += t; m = g ^ h; f = t + (Sigma0(g) + (h ^ (m & mp))); mp = m;
    t = Sigma1(b) + (ch(b, c, d) + (e + <u32>i32x4.extract_lane(y, 3))); a += t; m = f ^ g; e = t + (Sigma0(f) + (g ^ (m & mp))); mp = m;
    // rounds 60..63
    x3 = schedule(x3, x0, x1, x2);
    y = i32x4.add(x3, i32x4(0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2));
    t = Sigma1(a) + (ch(a, b, c) + (d + <u32>i32x4.extract_lane(y, 0))); h += t; m = e ^ f; d = t + (Sigma0(e) + (f ^ (m & mp))); mp = m;
    t = Sigma1(h) + (ch(h, a, b) + (c + <u32>i32x4.extract_lane(y, 1))); g += t; m = d ^ e; c = t + (Sigma0(d) + (e ^ (m & mp))); mp = m;
    t = Sigma1(g) + (ch(g, h, a) + (b + <u32>i32x4.extract_lane(y, 2))); f += t; m = c ^ d; b = t + (Sigma0(c) + (d ^ (m & mp))); mp = m;
    t = Sigma1(f) + (ch(f, g, h) + (a + <u32>i32x4.extract_lane(y, 3))); e += t; m = b ^ c; a = t + (Sigma0(b) + (c ^ (m & mp))); mp = m;
    a += a0; b += b0; c += c0; d += d0; e += e0; f += f0; g += g0; h += h0;
    p += 64;
  }
  store<u32>(STATE, a, 0); store<u32>(STATE, b, 4); store<u32>(STATE, c, 8); store<u32>(STATE, d, 12);
  store<u32>(STATE, e, 16); store<u32>(STATE, f, 20); store<u32>(STATE, g, 24); store<u32>(STATE, h, 28);
}
