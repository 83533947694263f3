/** R2 operations by pricing class (https://developers.cloudflare.com/r2/pricing/). */
export interface R2Usage {
  /** Writes and listings: put, list, createMultipartUpload, uploadPart, complete. */
  classA: number;
  /** Reads: head, get. */
  classB: number;
  /** delete and abort. */
  free: number;
}

const CLASS_A = new Set(["put", "list", "createMultipartUpload", "uploadPart", "complete"]);
const CLASS_B = new Set(["head", "get"]);
const FREE = new Set(["delete", "abort"]);

function count(usage: R2Usage, operation: string): void {
  if (CLASS_A.has(operation)) usage.classA++;
  else if (CLASS_B.has(operation)) usage.classB++;
  else if (FREE.has(operation)) usage.free++;
}

/** Wraps an object so each billed method call is counted; multipart uploads it returns are wrapped too. */
function counting<T extends object>(target: T, usage: R2Usage): T {
  return new Proxy(target, {
    get(object, property) {
      const value = Reflect.get(object, property) as unknown;
      if (typeof value !== "function") return value;
      const name = String(property);
      return (...args: unknown[]) => {
        count(usage, name);
        const result = (value as (...a: unknown[]) => unknown).apply(object, args);
        if (name === "resumeMultipartUpload") return counting(result as R2MultipartUpload, usage);
        if (name === "createMultipartUpload") return (result as Promise<R2MultipartUpload>).then((upload) => counting(upload, usage));
        return result;
      };
    },
  });
}

/** Every counted operation: each is one subrequest of the invocation that makes it. */
export function totalOf(usage: R2Usage): number {
  return usage.classA + usage.classB + usage.free;
}

/**
 * A bucket that counts the R2 operations made through it, by pricing class: what a request
 * costs on Cloudflare. Used when `LOG_R2_OPERATIONS=true`, and by `Budget` (`budget.ts`) to bound
 * the work of one invocation.
 *
 * @example
 * const { bucket, usage } = metered(env.REGISTRY);
 * await bucket.head("x");
 * usage.classB; // 1
 */
export function metered(bucket: R2Bucket): { bucket: R2Bucket; usage: R2Usage } {
  const usage: R2Usage = { classA: 0, classB: 0, free: 0 };
  return { bucket: counting(bucket, usage), usage };
}
