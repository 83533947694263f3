import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MAX_UPLOAD_AGE_SECONDS, parseConfig } from "../../src/config";
import { MAX_DIGEST_LENGTH } from "../../src/oci/digest";
import { MAX_NAME_LENGTH, MAX_TAG_LENGTH } from "../../src/oci/names";
import { keys, MAX_KEY_BYTES } from "../../src/registry/r2/keys";
import { artifactManifest, call, errorCode, imageManifest, keysUnder, ORIGIN, putManifest, sha256, uniqueName } from "./helpers";

const MiB = 1024 * 1024;

describe("settings bounded by the platform's limits", () => {
  it("UPLOAD_PART_SIZE is 5 MiB to 32 MiB (parts are held in the Worker's memory); outside, a warning and the default", () => {
    expect(parseConfig({ UPLOAD_PART_SIZE: String(5 * MiB) }).uploadPartSize).toBe(5 * MiB);
    expect(parseConfig({ UPLOAD_PART_SIZE: String(32 * MiB) }).uploadPartSize).toBe(32 * MiB);
    for (const value of [String(5 * 1024 * MiB), String(32 * MiB + 1), String(5 * MiB - 1), "lots"]) {
      const config = parseConfig({ UPLOAD_PART_SIZE: value });
      expect(config.uploadPartSize, value).toBeUndefined(); // the default (8 MiB)
      expect(config.warnings, value).toHaveLength(1);
      expect(config.warnings[0]).toMatch(/UPLOAD_PART_SIZE must be .* from 5242880 .* to 33554432 .*using the default/);
    }
  });

  it("GC_UPLOAD_MAX_AGE is at most 7 days (R2 aborts unfinished multipart uploads then): longer is lowered, with a warning", () => {
    expect(parseConfig({ GC_UPLOAD_MAX_AGE: "3600" }).gc.uploadMaxAgeMs).toBe(3_600_000);
    expect(parseConfig({ GC_UPLOAD_MAX_AGE: String(MAX_UPLOAD_AGE_SECONDS) }).warnings).toEqual([]);
    const config = parseConfig({ GC_UPLOAD_MAX_AGE: String(30 * 24 * 3600) });
    expect(config.gc.uploadMaxAgeMs).toBe(7 * 24 * 3600 * 1000);
    expect(config.warnings).toEqual([expect.stringMatching(/GC_UPLOAD_MAX_AGE of 2592000 seconds is longer than the 7 days .*; using 604800/)]);
  });

  it("the test environment's own settings are within them", () => {
    expect(parseConfig(env as never).warnings).toEqual([]);
  });
});

/** A valid repository name of exactly `length` characters, unique to the test. */
function nameOf(length: number): string {
  const base = uniqueName("long");
  return `${base}/${"a".repeat(length - base.length - 1)}`;
}

/** A digest of `length` characters of an algorithm the registry cannot verify (the grammar allows any). */
function longDigest(length: number): string {
  return `x-long:${"a".repeat(length - "x-long:".length)}`;
}

/** Every key in the bucket. */
async function allKeys(): Promise<string[]> {
  return keysUnder("");
}

describe("R2's 1,024-byte keys", () => {
  const name = "n".repeat(MAX_NAME_LENGTH);
  const digest = "d".repeat(MAX_DIGEST_LENGTH);
  const tag = "t".repeat(MAX_TAG_LENGTH);
  const uuid = crypto.randomUUID();
  // Every key shape, with the longest inputs the registry accepts.
  const longest: Record<keyof typeof keys, string> = {
    manifestsPrefix: keys.manifestsPrefix(name),
    manifest: keys.manifest(name, digest),
    blobsPrefix: keys.blobsPrefix(name),
    blob: keys.blob(name, digest),
    referrersRoot: keys.referrersRoot(name),
    referrersPrefix: keys.referrersPrefix(name, digest),
    referrer: keys.referrer(name, digest, digest),
    repositoriesPrefix: keys.repositoriesPrefix,
    repository: keys.repository(name),
    catalogBackfilled: keys.catalogBackfilled,
    catalogProgress: keys.catalogProgress,
    uploadsPrefix: keys.uploadsPrefix,
    upload: keys.upload(uuid),
    uploadCreated: keys.uploadCreated(uuid),
    uploadAfter: keys.uploadAfter(uuid, Number.MAX_SAFE_INTEGER),
    uploadLease: keys.uploadLease(uuid, Number.MAX_SAFE_INTEGER),
    uploadTail: keys.uploadTail(uuid, Number.MAX_SAFE_INTEGER),
    uploadData: keys.uploadData(uuid),
    data: `${keys.data(uuid)}/9999`,
    linksRoot: keys.linksRoot,
    linksPrefix: keys.linksPrefix(digest),
    link: keys.link(digest, name),
    linksBackfilled: keys.linksBackfilled,
    linksProgress: keys.linksProgress,
    pullThroughTag: keys.pullThroughTag(name, tag),
    gcState: keys.gcState(name),
    intentsPrefix: keys.intentsPrefix(name),
    intent: keys.intent(name, uuid),
    tombstonesPrefix: keys.tombstonesPrefix,
    tombstone: keys.tombstone(keys.blob(name, digest)),
    runsPrefix: keys.runsPrefix,
    run: keys.run("r".repeat(64)), // a run's id: up to 64 characters (gc/index.ts)
    collectionsPrefix: keys.collectionsPrefix,
    collection: keys.collection(uuid),
  };

  it("every key the registry builds stays within them, for the longest names, tags and digests it accepts", () => {
    expect(Object.keys(longest).sort()).toEqual(Object.keys(keys).sort());
    for (const [shape, key] of Object.entries(longest)) {
      expect(new TextEncoder().encode(key).byteLength, shape).toBeLessThanOrEqual(MAX_KEY_BYTES);
    }
    expect(longest.referrer.length).toBe(780);
  });

  it("a digest over the bound is 400 DIGEST_INVALID wherever it is sent, with nothing written", async () => {
    const repo = uniqueName("digests");
    const { text } = await imageManifest(repo, 7);
    const before = await allKeys();
    for (const digest of [longDigest(1000), longDigest(2000), longDigest(MAX_DIGEST_LENGTH + 1)]) {
      const requests: [string, RequestInit][] = [
        [`/v2/${repo}/blobs/${digest}`, {}],
        [`/v2/${repo}/blobs/${digest}`, { method: "HEAD" }],
        [`/v2/${repo}/blobs/${digest}`, { method: "DELETE" }],
        [`/v2/${repo}/manifests/${digest}`, {}],
        [`/v2/${repo}/manifests/${digest}`, { method: "DELETE" }],
        [`/v2/${repo}/manifests/${digest}`, { method: "PUT", body: text, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } }],
        [`/v2/${repo}/referrers/${digest}`, {}],
        [`/v2/${repo}/blobs/uploads/?mount=${digest}&from=${repo}`, { method: "POST" }],
      ];
      for (const [path, init] of requests) {
        const res = await call(path, init);
        const what = `${init.method ?? "GET"} ${path.slice(0, 60)}… (${digest.length} characters)`;
        expect(res.status, what).toBe(400);
        if (init.method !== "HEAD") expect(await errorCode(res), what).toBe("DIGEST_INVALID");
      }
    }
    expect(await allKeys()).toEqual(before);
  });

  it("a manifest whose subject's digest is over the bound is 400 DIGEST_INVALID before anything is stored", async () => {
    const repo = uniqueName("subject");
    await imageManifest(repo, 8); // its blobs
    const before = await allKeys();
    const manifest = artifactManifest({ digest: longDigest(900), size: 10 }, "application/vnd.example.sig");
    const res = await putManifest(repo, "sig", manifest);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
    expect(await allKeys()).toEqual(before);
  });

  it("the longest digests and a long name work end to end: a referrer of a subject with a 256-character digest", async () => {
    const repo = nameOf(MAX_NAME_LENGTH - new URL(ORIGIN).host.length - 1);
    const subject = longDigest(MAX_DIGEST_LENGTH);
    const manifest = artifactManifest({ digest: subject, size: 10 }, "application/vnd.example.sig");
    const digest = await sha256(manifest);
    expect((await putManifest(repo, digest, manifest)).status).toBe(201);
    const referrers = await call(`/v2/${repo}/referrers/${subject}`);
    expect(referrers.status).toBe(200);
    expect(((await referrers.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([digest]);
    // A page marker longer than any digest is cut to one's length: the same page.
    const paged = await call(`/v2/${repo}/referrers/${subject}?last=${"0".repeat(2000)}`);
    expect(paged.status).toBe(200);
    expect(((await paged.json()) as { manifests: unknown[] }).manifests).toHaveLength(1);
  });

  it("a name over 255 characters is 400 NAME_INVALID; a push needs <host>/<name> within 255 (the spec's note on clients)", async () => {
    const tooLong = nameOf(MAX_NAME_LENGTH + 1);
    for (const [path, method] of [
      [`/v2/${tooLong}/tags/list`, "GET"],
      [`/v2/${tooLong}/blobs/uploads/`, "POST"],
    ] as const) {
      const res = await call(path, { method });
      expect(res.status, path).toBe(400);
      expect(await errorCode(res)).toBe("NAME_INVALID");
    }
    // registry.test: 13 characters, so 241 are left for a name.
    const fits = nameOf(241);
    expect((await call(`/v2/${fits}/blobs/uploads/`, { method: "POST" })).status).toBe(202);
    const before = await allKeys();
    const over = nameOf(242);
    for (const res of [
      await call(`/v2/${over}/blobs/uploads/`, { method: "POST" }),
      await putManifest(over, "v1", (await imageManifest(uniqueName("elsewhere"), 9)).text),
    ]) {
      expect(res.status).toBe(400);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]?.code).toBe("NAME_INVALID");
      expect(body.errors[0]?.message).toMatch(/at most 241/);
    }
    const after = (await allKeys()).filter((k) => !k.startsWith("elsewhere/") && !k.includes("/elsewhere/"));
    expect(after.filter((k) => k.includes(over))).toEqual([]);
    expect(before.filter((k) => k.includes(over))).toEqual([]);
    // Reading it is not refused: it simply does not exist.
    expect((await call(`/v2/${over}/tags/list`)).status).toBe(404);
  });

  it("a tag list's `last` longer than any tag pages as its first 128 characters", async () => {
    const repo = uniqueName("tags");
    const { text } = await imageManifest(repo, 10);
    for (const tag of ["a", "b", "c"]) expect((await putManifest(repo, tag, text)).status).toBe(201);
    const res = await call(`/v2/${repo}/tags/list?last=${"a".repeat(2000)}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { tags: string[] }).tags).toEqual(["b", "c"]);
    const catalog = await call(`/v2/_catalog?last=${"z".repeat(2000)}`);
    expect(catalog.status).toBe(200);
  });
});
