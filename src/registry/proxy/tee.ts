/**
 * Splits a stream in two like `ReadableStream.tee()`, but with bounded memory: a branch that runs
 * ahead waits once the other has more than `limit` bytes queued, so a slow client and a fast
 * cache write (or the reverse) never hold a whole blob in the Worker's memory. A cancelled branch
 * no longer holds the other back; the source is cancelled when both are.
 *
 * @example
 * const [toClient, toCache] = boundedTee(upstream.body, 8 << 20);
 */
export function boundedTee(source: ReadableStream<Uint8Array>, limit: number): [ReadableStream<Uint8Array>, ReadableStream<Uint8Array>] {
  const reader = source.getReader();
  const queues: Uint8Array[][] = [[], []];
  const queued = [0, 0];
  const cancelled = [false, false];
  let done = false;
  let failed = false;
  let failure: unknown;
  let reading: Promise<void> | undefined;
  let waiters: (() => void)[] = [];
  const wake = () => {
    const woken = waiters;
    waiters = [];
    for (const resolve of woken) resolve();
  };

  const readOnce = async () => {
    try {
      const { done: end, value } = await reader.read();
      if (end) done = true;
      else {
        for (const i of [0, 1]) {
          if (cancelled[i]) continue;
          queues[i]!.push(value);
          queued[i]! += value.byteLength;
        }
      }
    } catch (error) {
      failed = true;
      failure = error;
    } finally {
      reading = undefined;
      wake();
    }
  };

  const pull = async (i: number, controller: ReadableStreamDefaultController<Uint8Array>) => {
    for (;;) {
      const chunk = queues[i]!.shift();
      if (chunk) {
        queued[i]! -= chunk.byteLength;
        controller.enqueue(chunk);
        wake();
        return;
      }
      if (failed) return controller.error(failure);
      if (done) return controller.close();
      const other = 1 - i;
      if (!cancelled[other] && queued[other]! > limit) {
        await new Promise<void>((resolve) => waiters.push(resolve));
        continue;
      }
      reading ??= readOnce();
      await reading;
    }
  };

  const cancel = async (i: number, reason: unknown) => {
    cancelled[i] = true;
    queues[i] = [];
    queued[i] = 0;
    wake();
    if (cancelled[1 - i]) await reader.cancel(reason).catch(() => {});
  };

  const branch = (i: number) =>
    new ReadableStream<Uint8Array>(
      { pull: (controller) => pull(i, controller), cancel: (reason) => cancel(i, reason) },
      { highWaterMark: 0 },
    );
  return [branch(0), branch(1)];
}
