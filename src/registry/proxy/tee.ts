/** How the client's branch of a {@link copyTee} ended. */
export type ClientEnd = "ended" | "cancelled" | "failed";

/** A stream split between a client and a copy that must never hold the client back. */
export interface CopyTee {
  /** The client's bytes, as fast as the source gives them. */
  client: ReadableStream<Uint8Array>;
  /** The same bytes for the copy; it errors when the copy is abandoned. */
  copy: ReadableStream<Uint8Array>;
  /** Ends the copy's branch with `reason` (its reader sees the error); the client's goes on. */
  abandon(reason: Error): void;
  /** Settles once the client's branch is over: read to its end, cancelled (the client went away), or failed. */
  clientEnd: Promise<ClientEnd>;
}

const CLIENT = 0;
const COPY = 1;

/**
 * Splits a stream between a client and a copy into storage, with bounded memory and the client
 * first: the client's reads never wait for the copy. The copy may run up to `lag` bytes ahead of
 * the client (then it waits for it); when it falls more than `lag` bytes behind, it is abandoned
 * (its branch errors) rather than slowing the client down. Once the client's branch is cancelled
 * the copy reads alone; the source is cancelled when neither branch reads any more.
 *
 * @example
 * const tee = copyTee(upstream.body, 8 << 20);
 * void tee.clientEnd.then((end) => end === "cancelled" && tee.abandon(new Error("the client went away")));
 * return new Response(tee.client); // while tee.copy goes into R2
 */
export function copyTee(source: ReadableStream<Uint8Array>, lag: number): CopyTee {
  const reader = pieceReader(source);
  const queues: Uint8Array[][] = [[], []];
  const queued = [0, 0];
  /** A branch that takes no more bytes: cancelled by its reader, or (the copy) abandoned. */
  const closed = [false, false];
  let copyController: ReadableStreamDefaultController<Uint8Array> | undefined;
  let abandoned = false;
  let done = false;
  let failure: { error: unknown } | undefined;
  let reading: Promise<void> | undefined;
  let waiters: (() => void)[] = [];
  let endClient: (end: ClientEnd) => void = () => undefined;
  const clientEnd = new Promise<ClientEnd>((resolve) => (endClient = resolve));

  const wake = () => {
    const woken = waiters;
    waiters = [];
    for (const resolve of woken) resolve();
  };
  const drop = (i: number) => {
    closed[i] = true;
    queues[i] = [];
    queued[i] = 0;
    wake();
  };
  const releaseSource = (reason: unknown) => {
    if (closed[CLIENT] && closed[COPY] && !done && !failure) void reader.cancel(reason).catch(() => undefined);
  };
  const abandon = (reason: Error) => {
    if (closed[COPY]) return;
    abandoned = true;
    drop(COPY);
    try {
      copyController?.error(reason);
    } catch {
      // Already closed: nothing to end.
    }
    releaseSource(reason);
  };

  const readOnce = async () => {
    try {
      const { done: end, value } = await reader.read();
      if (end) done = true;
      else {
        for (const i of [CLIENT, COPY]) {
          if (closed[i]) continue;
          queues[i]!.push(value);
          queued[i]! += value.byteLength;
        }
        if (!closed[COPY] && queued[COPY]! > lag) abandon(new Error(`the copy fell more than ${lag} bytes behind the client`));
      }
    } catch (error) {
      failure = { error };
    } finally {
      reading = undefined;
      wake();
    }
  };

  /** The next chunk of branch `i`, or its end; the copy waits while the client is `lag` bytes behind it. */
  const pull = async (i: number, controller: ReadableStreamDefaultController<Uint8Array>) => {
    for (;;) {
      if (i === COPY && abandoned) return;
      const chunk = queues[i]!.shift();
      if (chunk) {
        queued[i]! -= chunk.byteLength;
        controller.enqueue(chunk);
        wake();
        return;
      }
      if (failure) {
        if (i === CLIENT) endClient("failed");
        return controller.error(failure.error);
      }
      if (done) {
        if (i === CLIENT) endClient("ended");
        return controller.close();
      }
      if (i === COPY && !closed[CLIENT] && queued[CLIENT]! > lag) {
        await new Promise<void>((resolve) => waiters.push(resolve));
        continue;
      }
      reading ??= readOnce();
      await reading;
    }
  };

  const client = new ReadableStream<Uint8Array>(
    {
      pull: (controller) => pull(CLIENT, controller),
      cancel: (reason) => {
        drop(CLIENT);
        endClient("cancelled");
        releaseSource(reason);
      },
    },
    { highWaterMark: 0 },
  );
  const copy = new ReadableStream<Uint8Array>(
    {
      start: (controller) => {
        copyController = controller;
      },
      pull: (controller) => pull(COPY, controller),
      cancel: (reason) => {
        drop(COPY);
        releaseSource(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return { client, copy, abandon, clientEnd };
}

/** Largest piece read from the source at once. */
const PIECE = 1024 * 1024;

/**
 * Reads a stream in pieces of what has arrived, up to 1 MiB, never waiting for more: byte streams
 * (an upstream's body) hand on chunks of a few KiB otherwise, and each chunk's trip through
 * JavaScript, for both branches and the R2 write, costs more CPU than its bytes (a whole-chunk
 * tee of a 1 GiB blob took ~27 s of CPU more than this under the local stack). A piece under
 * half the buffer is copied out, so what the queues count is what they hold.
 */
function pieceReader(source: ReadableStream<Uint8Array>): { read(): Promise<ReadableStreamReadResult<Uint8Array>>; cancel(reason?: unknown): Promise<void> } {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = source.getReader({ mode: "byob" });
  } catch {
    return source.getReader();
  }
  return {
    read: async () => {
      const { done, value } = await byob.read(new Uint8Array(PIECE));
      if (done || !value) return { done: true, value: undefined };
      return { done: false, value: value.byteLength < PIECE / 2 ? value.slice() : value };
    },
    cancel: (reason) => byob.cancel(reason),
  };
}
