/**
 * A read-only tar index: walks the headers of an uncompressed tar file (ustar, GNU long names and
 * base-256 sizes, PAX extended headers) with positioned reads, skipping over the data, and records
 * where each entry's bytes start and how long they are. Nothing is extracted: callers stream byte
 * ranges of the archive file itself. Symbolic and hard links are resolved on lookup (docker save
 * links identical layers to one another).
 */
import { createReadStream, type ReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { posix } from "node:path";

const BLOCK = 512;

export interface TarEntry {
  /** Normalised path: no leading "./" or "/", no trailing "/". */
  name: string;
  /** "file", "dir", "symlink", "hardlink" or "other". */
  type: "file" | "dir" | "symlink" | "hardlink" | "other";
  /** Offset of the entry's data in the archive file. */
  offset: number;
  size: number;
  /** Target of a link, as written in the archive. */
  linkName?: string;
}

export function normalizeTarPath(name: string): string {
  let n = name.replace(/\\/g, "/");
  while (n.startsWith("./")) n = n.slice(2);
  n = n.replace(/^\/+/, "").replace(/\/+$/, "");
  return posix.normalize(n === "" ? "." : n).replace(/^\.$/, "");
}

function cString(buf: Buffer, start: number, length: number): string {
  const slice = buf.subarray(start, start + length);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? slice.length : nul).toString("utf8");
}

/** An octal field, or a GNU base-256 one (high bit set on the first byte). */
function numeric(buf: Buffer, start: number, length: number): number {
  const first = buf[start]!;
  if (first & 0x80) {
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + buf[start + i]!;
    return value;
  }
  const text = cString(buf, start, length).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = numeric(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === stored;
}

/** Parses PAX records ("<len> key=value\n"…). */
function paxRecords(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(data.subarray(pos, space).toString("ascii"), 10);
    if (!(len > 0)) break;
    const record = data.subarray(space + 1, pos + len - 1).toString("utf8");
    const eq = record.indexOf("=");
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

export class TarIndex {
  readonly path: string;
  readonly entries: ReadonlyMap<string, TarEntry>;

  private constructor(path: string, entries: Map<string, TarEntry>) {
    this.path = path;
    this.entries = entries;
  }

  /** Reads every header of the archive at `path`. Throws a clear error for anything but a plain tar. */
  static async open(path: string): Promise<TarIndex> {
    const fh = await open(path, "r");
    try {
      return new TarIndex(path, await readEntries(fh, path));
    } finally {
      await fh.close();
    }
  }

  /** The file entry at `name`, following links; undefined when there is none. */
  file(name: string): TarEntry | undefined {
    let current = normalizeTarPath(name);
    for (let hops = 0; hops < 16; hops++) {
      const e = this.entries.get(current);
      if (!e) return undefined;
      if (e.type === "file") return e;
      if (e.type === "hardlink" && e.linkName !== undefined) current = normalizeTarPath(e.linkName);
      else if (e.type === "symlink" && e.linkName !== undefined) {
        current = e.linkName.startsWith("/")
          ? normalizeTarPath(e.linkName)
          : normalizeTarPath(posix.join(posix.dirname(current), e.linkName));
      } else return undefined;
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.file(name) !== undefined;
  }

  /** Reads a (small) file entry whole. */
  async read(name: string, maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
    const e = this.file(name);
    if (!e) throw new Error(`${this.path}: no file ${name} in the archive`);
    if (e.size > maxBytes) throw new Error(`${this.path}: ${name} is ${e.size} bytes, too large to read whole`);
    const fh = await open(this.path, "r");
    try {
      const buf = Buffer.alloc(e.size);
      let done = 0;
      while (done < e.size) {
        const { bytesRead } = await fh.read(buf, done, e.size - done, e.offset + done);
        if (bytesRead === 0) throw new Error(`${this.path}: archive ends inside ${name}`);
        done += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  /** Streams bytes [start, end) of a file entry. */
  stream(name: string, start = 0, end?: number): ReadStream {
    const e = this.file(name);
    if (!e) throw new Error(`${this.path}: no file ${name} in the archive`);
    return streamRange(this.path, e.offset, e.size, start, end);
  }
}

/** Streams bytes [start, end) of a region of `size` bytes at `offset` in a file. */
export function streamRange(path: string, offset: number, size: number, start = 0, end = size): ReadStream {
  if (start < 0 || end > size || start > end) throw new Error(`bad range ${start}-${end} of a ${size}-byte blob`);
  if (end === start) return createReadStream(path, { start: 0, end: -1 });
  return createReadStream(path, { start: offset + start, end: offset + end - 1, highWaterMark: 1 << 20 });
}

async function readEntries(fh: FileHandle, path: string): Promise<Map<string, TarEntry>> {
  const { size: fileSize } = await fh.stat();
  const entries = new Map<string, TarEntry>();
  const header = Buffer.alloc(BLOCK);
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Record<string, string> = {};
  let globalPax: Record<string, string> = {};
  const readData = async (offset: number, size: number): Promise<Buffer> => {
    if (size > 16 * 1024 * 1024) throw new Error(`${path}: extended header of ${size} bytes at ${offset}`);
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, offset);
    return buf;
  };
  for (;;) {
    const { bytesRead } = await fh.read(header, 0, BLOCK, pos);
    if (pos === 0) {
      const gz = header[0] === 0x1f && header[1] === 0x8b;
      const zst = header[0] === 0x28 && header[1] === 0xb5 && header[2] === 0x2f && header[3] === 0xfd;
      if (gz || zst) {
        throw new Error(
          `${path} is ${gz ? "gzip" : "zstd"}-compressed: decompress it first (e.g. \`${gz ? "gunzip" : "unzstd"} -k ${path}\`), the tool reads archives in place`,
        );
      }
    }
    if (bytesRead < BLOCK) {
      if (pos === 0) throw new Error(`${path} is not a tar archive (too short)`);
      break; // tolerate a missing end-of-archive marker
    }
    if (header.every((b) => b === 0)) break;
    if (!checksumOk(header)) {
      if (pos === 0) throw new Error(`${path} is not a tar archive`);
      throw new Error(`${path}: corrupt tar header at offset ${pos}`);
    }
    const typeFlag = String.fromCharCode(header[156]!);
    let size = numeric(header, 124, 12);
    const dataOffset = pos + BLOCK;
    const next = () => dataOffset + Math.ceil(size / BLOCK) * BLOCK;
    if (typeFlag === "L" || typeFlag === "K") {
      const text = cString(await readData(dataOffset, size), 0, size);
      if (typeFlag === "L") longName = text;
      else longLink = text;
      pos = next();
      continue;
    }
    if (typeFlag === "x" || typeFlag === "g") {
      const records = paxRecords(await readData(dataOffset, size));
      if (typeFlag === "x") pax = records;
      else globalPax = { ...globalPax, ...records };
      pos = next();
      continue;
    }
    const attrs = { ...globalPax, ...pax };
    if (attrs.size !== undefined) size = Number(attrs.size);
    const prefix = cString(header, 345, 155);
    const magic = cString(header, 257, 6);
    const rawName = attrs.path ?? longName ?? (magic.startsWith("ustar") && prefix ? `${prefix}/${cString(header, 0, 100)}` : cString(header, 0, 100));
    const linkName = attrs.linkpath ?? longLink ?? cString(header, 157, 100);
    const type: TarEntry["type"] =
      typeFlag === "0" || typeFlag === "\0" || typeFlag === "7"
        ? "file"
        : typeFlag === "5"
          ? "dir"
          : typeFlag === "2"
            ? "symlink"
            : typeFlag === "1"
              ? "hardlink"
              : "other";
    // Links carry no data, whatever their size field says.
    if (type === "symlink" || type === "hardlink" || type === "dir") size = 0;
    if (type === "file" && dataOffset + size > fileSize) throw new Error(`${path}: archive is truncated (${rawName} ends past the end of the file)`);
    const name = normalizeTarPath(rawName);
    entries.set(name, { name, type, offset: dataOffset, size, ...(type === "symlink" || type === "hardlink" ? { linkName } : {}) });
    pos = next();
    longName = undefined;
    longLink = undefined;
    pax = {};
  }
  return entries;
}
