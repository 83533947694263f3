/**
 * Content stores an OCI image layout can live in: a directory (`oci-layout`, `index.json`,
 * `blobs/<alg>/<hex>`) or a tar archive holding the same files (an OCI archive, or the layout that
 * `docker save` writes since docker 25). Both read small files whole and stream blob ranges.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { isSha256Digest } from "../media.ts";
import { streamRange, type TarIndex } from "../tar.ts";

export interface BlobStore {
  /** "OCI layout ./dir", "archive ./image.tar". */
  readonly description: string;
  /** A top-level file such as index.json, or undefined. */
  readFile(name: string): Promise<Buffer | undefined>;
  /** Size of a blob, or undefined when the store does not have it. */
  blobSize(digest: string): number | undefined;
  /** Reads a (small) blob whole. */
  readBlob(digest: string): Promise<Buffer>;
  /** Streams bytes [start, end) of a blob. */
  openBlob(digest: string, start: number, end: number): Readable;
}

function blobPath(digest: string): string {
  const [alg, hex] = digest.split(":");
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) throw new Error(`invalid digest ${digest}`);
  return `blobs/${alg}/${hex}`;
}

const MAX_SMALL = 16 * 1024 * 1024;

export class DirectoryStore implements BlobStore {
  readonly description: string;
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    this.description = `OCI layout ${dir}`;
  }

  async readFile(name: string): Promise<Buffer | undefined> {
    const p = join(this.dir, name);
    return existsSync(p) ? readFileSync(p) : undefined;
  }

  blobSize(digest: string): number | undefined {
    try {
      const s = statSync(join(this.dir, blobPath(digest)));
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }

  async readBlob(digest: string): Promise<Buffer> {
    const size = this.blobSize(digest);
    if (size === undefined) throw new Error(`${this.description} has no blob ${digest}`);
    if (size > MAX_SMALL) throw new Error(`${this.description}: blob ${digest} is ${size} bytes, too large for a manifest or config`);
    return readFileSync(join(this.dir, blobPath(digest)));
  }

  openBlob(digest: string, start: number, end: number): Readable {
    const size = this.blobSize(digest);
    if (size === undefined) throw new Error(`${this.description} has no blob ${digest}`);
    return streamRange(join(this.dir, blobPath(digest)), 0, size, start, end);
  }
}

export class TarStore implements BlobStore {
  readonly description: string;
  readonly tar: TarIndex;

  constructor(tar: TarIndex) {
    this.tar = tar;
    this.description = `archive ${tar.path}`;
  }

  async readFile(name: string): Promise<Buffer | undefined> {
    return this.tar.has(name) ? this.tar.read(name, MAX_SMALL) : undefined;
  }

  blobSize(digest: string): number | undefined {
    return this.tar.file(blobPath(digest))?.size;
  }

  async readBlob(digest: string): Promise<Buffer> {
    if (!this.tar.has(blobPath(digest))) throw new Error(`${this.description} has no blob ${digest}`);
    return this.tar.read(blobPath(digest), MAX_SMALL);
  }

  openBlob(digest: string, start: number, end: number): Readable {
    return this.tar.stream(blobPath(digest), start, end);
  }
}

/** The digest named by an archive path such as `blobs/sha256/<hex>`, or undefined. */
export function digestFromBlobPath(path: string): string | undefined {
  const m = /(?:^|\/)blobs\/sha256\/([0-9a-f]{64})$/.exec(path);
  const d = m ? `sha256:${m[1]}` : undefined;
  return d && isSha256Digest(d) ? d : undefined;
}
