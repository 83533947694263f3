/** Tells a compressed layer from a plain tar by its first bytes (gzip, zstd magic numbers). */
import { open } from "node:fs/promises";

export type Compression = "none" | "gzip" | "zstd";

/** The compression of the `size` bytes at `offset` in the file at `path`. */
export async function compressionOf(path: string, offset: number, size: number): Promise<Compression> {
  if (size < 4) return "none";
  const fh = await open(path, "r");
  try {
    const magic = Buffer.alloc(4);
    await fh.read(magic, 0, 4, offset);
    if (magic[0] === 0x1f && magic[1] === 0x8b) return "gzip";
    if (magic[0] === 0x28 && magic[1] === 0xb5 && magic[2] === 0x2f && magic[3] === 0xfd) return "zstd";
    return "none";
  } finally {
    await fh.close();
  }
}
