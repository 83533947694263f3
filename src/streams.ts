/**
 * A FIFO of byte chunks that hands out exact-size pieces, so a stream of any chunking can be cut
 * into fixed-size parts while holding at most one part (plus one chunk) in memory.
 *
 * @example
 * const q = new ByteQueue();
 * q.push(chunk);
 * while (q.size >= partSize) await uploadPart(q.take(partSize));
 */
export class ByteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  size = 0;

  push(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
  }

  /** Removes and returns the first `n` bytes (n ≤ size). */
  take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const available = chunk.byteLength - this.head;
      const count = Math.min(available, n - filled);
      out.set(chunk.subarray(this.head, this.head + count), filled);
      filled += count;
      this.head += count;
      if (this.head === chunk.byteLength) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    this.size -= n;
    return out;
  }

  /** Removes and returns everything. */
  drain(): Uint8Array {
    return this.take(this.size);
  }
}

/**
 * Reads a whole (small) stream into memory, failing once it exceeds `limit` bytes.
 *
 * @example
 * const bytes = await readLimited(request.body, 4 << 20); // undefined when over the limit
 */
export async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array | undefined> {
  const queue = new ByteQueue();
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    queue.push(value);
    if (queue.size > limit) {
      await reader.cancel();
      return undefined;
    }
  }
  return queue.drain();
}

/** Bytes asked of a stream in one read: large reads cost far less per byte than small ones. */
export const READ_SIZE = 1024 * 1024;

/** Reads a stream in large pieces; `undefined` once it ends. */
export interface ByteReader {
  /** The next piece: at most `max` bytes when the stream supports it (any size otherwise). */
  read(max?: number): Promise<Uint8Array | undefined>;
  /**
   * Gives a piece this reader returned back for a later read to fill, instead of a new buffer
   * each read: call it only once nothing refers to the piece any more (copied, hashed, or taken by
   * a workerd stream such as `FixedLengthStream`, whose `write()` resolves once the bytes are
   * taken; see `test/worker/streams.test.ts`). Not after a write into a JavaScript
   * `TransformStream`: its `write()` resolves while the chunk still waits in its queue. Without
   * it, a 1 GiB body leaves 1,024 MiB of pieces for the garbage collector, which lets tens of MiB
   * pile up per isolate before it runs.
   */
  recycle(piece: Uint8Array): void;
  cancel(reason?: unknown): Promise<void>;
}

/**
 * Reads a stream in pieces of up to `READ_SIZE` bytes. Byte streams (request bodies, R2 bodies) are
 * read with a BYOB reader that fills each piece (workerd hands R2 bodies on in 4 KiB chunks
 * otherwise, and each chunk costs a trip through JavaScript); other streams as their chunks come.
 *
 * @example
 * const reader = byteReader(request.body);
 * for (let piece = await reader.read(); piece; piece = await reader.read()) use(piece);
 */
export function byteReader(stream: ReadableStream<Uint8Array>): ByteReader {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    const plain = stream.getReader();
    return {
      read: async () => {
        const { done, value } = await plain.read();
        return done ? undefined : value;
      },
      recycle: () => undefined,
      cancel: (reason) => plain.cancel(reason),
    };
  }
  const reader = byob;
  let ended = false;
  let spare: ArrayBuffer | undefined;
  // The buffers of the pieces handed out: only those are read into again.
  const lent = new WeakSet<ArrayBufferLike>();
  return {
    read: async (max = READ_SIZE) => {
      if (ended) return undefined;
      const size = Math.max(1, Math.min(max, READ_SIZE));
      // A spare is always READ_SIZE long (see recycle), so it holds any read.
      const view = spare ? new Uint8Array(spare, 0, size) : new Uint8Array(size);
      spare = undefined;
      const { done, value } = await reader.readAtLeast(size, view);
      if (done) ended = true;
      if (!value || value.byteLength === 0) return undefined;
      lent.add(value.buffer);
      return value;
    },
    recycle: (piece) => {
      const { buffer } = piece;
      if (buffer instanceof ArrayBuffer && buffer.byteLength === READ_SIZE && lent.delete(buffer)) spare = buffer;
    },
    cancel: (reason) => reader.cancel(reason),
  };
}

/**
 * Hands every byte of `source` to `writer` in large pieces, waiting for each to be taken (by hand:
 * workerd cannot `pipeTo()` from one of its own streams into another).
 *
 * @example
 * await pump(object.body, writer);
 */
export async function pump(source: ReadableStream<Uint8Array>, writer: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
  const reader = byteReader(source);
  // The next piece is read while the last one is being taken: two pieces held at most.
  let writing: Promise<void> | undefined;
  try {
    for (let piece = await reader.read(); piece; piece = await reader.read()) {
      await writing;
      writing = writer.write(piece);
      writing.catch(() => undefined);
    }
    await writing;
  } catch (error) {
    await reader.cancel(error).catch(() => undefined);
    throw error;
  }
}

/**
 * A stream of a declared length (R2 wants one for any stream it did not make itself), filled by
 * `fill` through its writer, which is closed once `fill` is done and aborted when it fails.
 * `done` settles when the last byte is taken (or the filling failed).
 *
 * @example
 * const { readable } = fixedLength(size, (writer) => pump(first, writer).then(() => pump(second, writer)));
 */
export function fixedLength(
  length: number,
  fill: (writer: WritableStreamDefaultWriter<Uint8Array>) => Promise<void>,
): { readable: ReadableStream<Uint8Array>; done: Promise<void> } {
  const { readable, writable } = new FixedLengthStream(length);
  const writer = writable.getWriter();
  const done = fill(writer).then(() => writer.close());
  done.catch((error: unknown) => writer.abort(error).catch(() => undefined));
  return { readable, done };
}

/**
 * `source` as a stream of a declared length: the chunks pass through, nothing is buffered, and
 * the result errors when `source` is shorter or longer than `length`.
 *
 * @example
 * await bucket.put(key, withLength(upstreamBody, size));
 */
export function withLength(source: ReadableStream<Uint8Array>, length: number): ReadableStream<Uint8Array> {
  const { readable, done } = fixedLength(length, (writer) => pump(source, writer));
  done.catch((error: unknown) => source.cancel(error).catch(() => undefined));
  return readable;
}

/**
 * The bytes `start` to `end` (inclusive) of a stream, cancelling the source once they are through.
 *
 * @example
 * const part = sliceStream(wholeBlob, 100, 199); // 100 bytes
 */
export function sliceStream(source: ReadableStream<Uint8Array>, start: number, end: number): ReadableStream<Uint8Array> {
  let position = 0;
  return source.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        const from = Math.max(0, start - position);
        const to = Math.min(chunk.byteLength, end + 1 - position);
        position += chunk.byteLength;
        if (to > from) controller.enqueue(chunk.subarray(from, to));
        if (position > end) controller.terminate();
      },
    }),
  );
}
