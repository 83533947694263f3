/**
 * `--compress`: gzips an uncompressed layer into a temp file, hashing both sides as it streams
 * (the compressed digest names the new blob; the uncompressed one must still be the diff ID the
 * image config lists). Memory stays flat whatever the layer size.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";

export interface Compressed {
  path: string;
  size: number;
  digest: string;
  /** sha256 of the input. */
  uncompressedDigest: string;
}

function hashing(onDone: (digest: string, size: number) => void): Transform {
  const hash = createHash("sha256");
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      onDone(`sha256:${hash.digest("hex")}`, size);
      cb();
    },
  });
}

let counter = 0;

/** Gzips `input` to a new file in `tmpDir`. */
export async function gzipToFile(input: Readable, tmpDir: string, level = 6): Promise<Compressed> {
  const path = join(tmpDir, `layer-${process.pid}-${++counter}.tar.gz`);
  let uncompressedDigest = "";
  let digest = "";
  let size = 0;
  await pipeline(
    input,
    hashing((d) => (uncompressedDigest = d)),
    createGzip({ level }),
    hashing((d, n) => {
      digest = d;
      size = n;
    }),
    createWriteStream(path),
  );
  return { path, size, digest, uncompressedDigest };
}
