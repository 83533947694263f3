/**
 * The push tool's sources, without a registry: the tar index (PAX and GNU long names, links),
 * docker save archives in their three shapes (classic with symlinked layers, docker 25+ with an
 * OCI layout inside, containerd image store with compressed layers and a partial index), OCI
 * layouts (tags, platforms, corruption), destinations and source specs. Fast: builds small
 * archives in a temp dir.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { text } from "node:stream/consumers";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PushPlan } from "../../push/image.ts";
import { parseTarget } from "../../push/reference.ts";
import { parseSource, planSource } from "../../push/sources/index.ts";
import { TarIndex } from "../../push/tar.ts";
import { writeBlob, writeLayoutIndex } from "./lib/big-layout.ts";
import { allBlobs, buildMultiPlatformIndex, descriptorOf, MediaType, seededImage, sha256, tarArchive } from "./lib/oci-image.ts";
import { makeTempDir, removeTempDir } from "./lib/processes.ts";

/** One raw tar entry: a header of the given type, then the data padded to 512 bytes. */
function rawEntry(name: string, type: string, data: Buffer = Buffer.alloc(0), linkName = ""): Buffer {
  const h = Buffer.alloc(512, 0);
  h.write(name.slice(0, 99), 0);
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  h.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
  h.write("14536174000\0", 136);
  h.fill(0x20, 148, 156);
  h.write(type, 156);
  h.write(linkName, 157);
  h.write("ustar\0", 257);
  h.write("00", 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad]);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
  return `${len}${body}`;
}

function tarOf(entries: Buffer[]): Buffer {
  return Buffer.concat([...entries, Buffer.alloc(1024)]);
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

async function readAll(plan: PushPlan, digest: string): Promise<Buffer> {
  const b = plan.blobs.find((x) => x.digest === digest)!;
  const chunks: Buffer[] = [];
  for await (const c of b.open(0, b.size)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("push tool sources", () => {
  let dir: string;
  const img = seededImage("push-sources", { architecture: "amd64", layerCount: 2, bigFileBytes: 5000 });
  const layerTars = img.layers.map((l) => tarArchive([{ path: `data/${l.diffId.slice(7, 15)}`, content: l.diffId }]));
  // The same image with uncompressed layers, as docker's classic store keeps it.
  const configBytes = json({
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [sha256(layerTars[0]!), sha256(layerTars[1]!), sha256(layerTars[0]!)] },
  });
  const configDigest = sha256(configBytes);

  beforeAll(() => {
    dir = makeTempDir("e2e-push-src");
  });
  afterAll(() => removeTempDir(dir));

  it("indexes tars with PAX paths, GNU long names and links, and streams ranges of an entry", async () => {
    const longName = `${"d".repeat(80)}/${"f".repeat(80)}.bin`;
    const gnuName = `${"g".repeat(120)}.txt`;
    const path = join(dir, "names.tar");
    writeFileSync(
      path,
      tarOf([
        rawEntry("PaxHeaders/x", "x", Buffer.from(paxRecord("path", longName))),
        rawEntry("truncated-name", "0", Buffer.from("pax content")),
        rawEntry("././@LongLink", "L", Buffer.from(`${gnuName}\0`)),
        rawEntry("short", "0", Buffer.from("gnu content")),
        rawEntry("./dir/", "5"),
        rawEntry("dir/link", "2", Buffer.alloc(0), "../hard"),
        rawEntry("plain.txt", "0", Buffer.from("plain content")),
        rawEntry("hard", "1", Buffer.alloc(0), "plain.txt"),
      ]),
    );
    const tar = await TarIndex.open(path);
    expect((await tar.read(longName)).toString()).toBe("pax content");
    expect((await tar.read(gnuName)).toString()).toBe("gnu content");
    // A symlink to a hard link to a file.
    expect((await tar.read("dir/link")).toString()).toBe("plain content");
    expect((await tar.read("hard")).toString()).toBe("plain content");
    expect(await text(tar.stream(longName, 4, 7))).toBe("con");
    expect(tar.has("truncated-name")).toBe(false);

    const gz = join(dir, "image.tar.gz");
    writeFileSync(gz, gzipSync(tarOf([rawEntry("a", "0", Buffer.from("x"))])));
    await expect(TarIndex.open(gz)).rejects.toThrow(/gzip-compressed: decompress it first/);
  });

  it("reads a classic docker save archive: Docker schema 2, image ID kept, symlinked layers pushed once", async () => {
    const path = join(dir, "classic.tar");
    const configName = `${configDigest.slice(7)}.json`;
    writeFileSync(
      path,
      tarOf([
        rawEntry("aaaa/", "5"),
        rawEntry("aaaa/layer.tar", "0", layerTars[0]),
        rawEntry("bbbb/", "5"),
        rawEntry("bbbb/layer.tar", "0", layerTars[1]),
        rawEntry("cccc/", "5"),
        rawEntry("cccc/layer.tar", "2", Buffer.alloc(0), "../aaaa/layer.tar"),
        rawEntry(configName, "0", configBytes),
        rawEntry("manifest.json", "0", json([{ Config: configName, RepoTags: ["example/app:1"], Layers: ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"] }])),
      ]),
    );
    const plan = await planSource(parseSource(`archive:${path}`), {});
    const m = JSON.parse(plan.manifests[0]!.bytes.toString()) as { mediaType: string; config: { digest: string; mediaType: string }; layers: Array<{ digest: string; mediaType: string }> };
    expect(m.mediaType).toBe(MediaType.dockerManifest);
    expect(m.config).toMatchObject({ digest: configDigest, mediaType: MediaType.dockerConfig });
    expect(m.layers.map((l) => l.digest)).toEqual([sha256(layerTars[0]!), sha256(layerTars[1]!), sha256(layerTars[0]!)]);
    expect(new Set(m.layers.map((l) => l.mediaType))).toEqual(new Set(["application/vnd.docker.image.rootfs.diff.tar"]));
    expect(plan.blobs.map((b) => b.digest).sort()).toEqual([configDigest, sha256(layerTars[0]!), sha256(layerTars[1]!)].sort());
    expect(sha256(await readAll(plan, sha256(layerTars[1]!)))).toBe(sha256(layerTars[1]!));
    expect(plan.manifests[0]!.digest).toBe(sha256(plan.manifests[0]!.bytes));
    // By name too, and a wrong name says what is there.
    await planSource(parseSource(`archive:${path}:example/app:1`), {});
    await expect(planSource(parseSource(`archive:${path}:other:2`), {})).rejects.toThrow(/example\/app:1/);
  });

  it("reads a docker 25+ archive (OCI layout inside) with uncompressed layers as Docker schema 2", async () => {
    const path = join(dir, "docker25.tar");
    const layers = [layerTars[0]!, layerTars[1]!];
    const config = json({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: layers.map(sha256) } });
    const ociManifest = json({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: sha256(l), size: l.length })),
    });
    const blob = (b: Buffer) => rawEntry(`blobs/sha256/${sha256(b).slice(7)}`, "0", b);
    writeFileSync(
      path,
      tarOf([
        rawEntry("blobs/", "5"),
        rawEntry("blobs/sha256/", "5"),
        ...layers.map(blob),
        blob(config),
        blob(ociManifest),
        rawEntry("index.json", "0", json({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, digest: sha256(ociManifest), size: ociManifest.length, annotations: { "io.containerd.image.name": "docker.io/library/app:1", "org.opencontainers.image.ref.name": "1" } }] })),
        rawEntry("manifest.json", "0", json([{ Config: `blobs/sha256/${sha256(config).slice(7)}`, RepoTags: ["app:1"], Layers: layers.map((l) => `blobs/sha256/${sha256(l).slice(7)}`) }])),
        rawEntry("oci-layout", "0", json({ imageLayoutVersion: "1.0.0" })),
      ]),
    );
    const plan = await planSource(parseSource(`archive:${path}:app:1`), {});
    const m = JSON.parse(plan.manifests[0]!.bytes.toString()) as { mediaType: string; config: { digest: string }; layers: Array<{ digest: string }> };
    expect(m.mediaType).toBe(MediaType.dockerManifest);
    expect(m.config.digest).toBe(sha256(config));
    expect(m.layers.map((l) => l.digest)).toEqual(layers.map(sha256));
    expect(plan.blobs.every((b) => b.digest === sha256(config) || b.verify)).toBe(true);
  });

  it("pushes the archive's own manifest when docker kept compressed layers (containerd store), even from a partial index", async () => {
    const multi = buildMultiPlatformIndex([img, seededImage("push-sources", { architecture: "arm64", layerCount: 2 })]);
    const amd = multi.images[0]!;
    const path = join(dir, "containerd.tar");
    const blob = (b: { digest: string; bytes: Buffer }) => rawEntry(`blobs/sha256/${b.digest.slice(7)}`, "0", b.bytes);
    // Only the amd64 image's blobs, as `docker save` writes on an amd64 host.
    writeFileSync(
      path,
      tarOf([
        ...[amd.manifest, amd.config, ...amd.layers, multi.index].map(blob),
        rawEntry("index.json", "0", json({ schemaVersion: 2, manifests: [{ ...descriptorOf(multi.index), annotations: { "io.containerd.image.name": "docker.io/library/app:2" } }] })),
        rawEntry("manifest.json", "0", json([{ Config: `blobs/sha256/${amd.config.digest.slice(7)}`, RepoTags: ["app:2"], Layers: amd.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`) }])),
        rawEntry("oci-layout", "0", json({ imageLayoutVersion: "1.0.0" })),
      ]),
    );
    const plan = await planSource(parseSource(`archive:${path}`), {});
    expect(plan.manifests.map((m) => m.digest)).toEqual([amd.manifest.digest]);
    expect(plan.blobs.map((b) => b.digest).sort()).toEqual([amd.config.digest, ...amd.layers.map((l) => l.digest)].sort());
  });

  it("reads OCI layouts: tags, --platform, and refuses corrupt or missing blobs", async () => {
    const layout = join(dir, "layout");
    const multi = buildMultiPlatformIndex([img, seededImage("push-sources", { architecture: "arm64", variant: "v8", layerCount: 2 })]);
    for (const b of allBlobs(multi)) writeBlob(layout, b);
    writeLayoutIndex(layout, [
      { tag: "multi", descriptor: descriptorOf(multi.index) },
      { tag: "one", descriptor: descriptorOf(img.manifest) },
    ]);
    const all = await planSource(parseSource(`oci:${layout}:multi`), {});
    expect(all.manifests.map((m) => m.digest)).toEqual([...multi.images.map((i) => i.manifest.digest), multi.index.digest]);
    const arm = await planSource(parseSource(`oci:${layout}:multi`), { platform: "linux/arm64" });
    expect(arm.manifests.map((m) => m.digest)).toEqual([multi.images[1]!.manifest.digest]);
    await expect(planSource(parseSource(`oci:${layout}`), {})).rejects.toThrow(/holds 2 images/);
    await expect(planSource(parseSource(`${layout}:nope`), {})).rejects.toThrow(/no image named "nope"/);

    writeFileSync(join(layout, "blobs", "sha256", multi.images[1]!.manifest.digest.slice(7)), "{}");
    await expect(planSource(parseSource(`oci:${layout}:multi`), {})).rejects.toThrow(/is corrupt/);
    // A layer whose bytes do not match is caught while it streams (BlobSource.verify).
    const one = await planSource(parseSource(`oci:${layout}:one`), {});
    expect(one.blobs.filter((b) => b.size > 4096).every((b) => b.verify)).toBe(true);
  });

  it("parses destinations and picks the scheme", () => {
    expect(parseTarget("127.0.0.1:9999/team/app:1.0")).toMatchObject({ host: "127.0.0.1:9999", repository: "team/app", tag: "1.0", baseUrl: "http://127.0.0.1:9999" });
    expect(parseTarget("127.0.0.1:9999/team/app", { https: true })).toMatchObject({ tag: "latest", baseUrl: "https://127.0.0.1:9999" });
    expect(parseTarget("localhost/app").baseUrl).toBe("http://localhost");
    expect(parseTarget("[::1]:5000/app:x").baseUrl).toBe("http://[::1]:5000");
    expect(parseTarget("registry.example.workers.dev/team/app:1.0").baseUrl).toBe("https://registry.example.workers.dev");
    expect(parseTarget("http://reg.internal:5000/a/b@sha256:" + "a".repeat(64))).toMatchObject({ baseUrl: "http://reg.internal:5000", digest: `sha256:${"a".repeat(64)}` });
    expect(() => parseTarget("app:1")).toThrow(/host\[:port\]\/repository/);
    expect(() => parseTarget("reg.example/Team/App")).toThrow(/invalid repository name/);
  });
});
