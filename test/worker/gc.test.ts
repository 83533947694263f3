import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import type { Env } from "../../src/env";
import {
  bodyBytes,
  bytesOf,
  call,
  errorCode,
  hexOf,
  imageManifest,
  keysUnder,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  putManifest,
  RO,
  sha256,
  startUpload,
  uniqueName,
} from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

const MiB = 1024 * 1024;

interface Report {
  success: boolean;
  manifests: { digest: string; size: number; tags: string[] }[];
  blobs: { digest: string; size: number; kind: string }[];
  shared: { digest: string; size: number }[];
  bytes: number;
}

/** Runs a collection of one repository with no grace period (what a user's script does after deleting). */
async function gc(name: string, query = "mode=unreferenced"): Promise<Report> {
  const res = await call(`/v2/${name}/gc?grace=0&report=true&${query}`, { method: "POST" });
  expect(res.status).toBe(200);
  const report = (await res.json()) as Report;
  expect(report.success).toBe(true);
  return report;
}

async function blobStatus(name: string, digest: string): Promise<number> {
  return (await call(`/v2/${name}/blobs/${digest}`, { method: "HEAD" })).status;
}

async function manifestStatus(name: string, reference: string): Promise<number> {
  return (await call(`/v2/${name}/manifests/${reference}`, { method: "HEAD" })).status;
}

async function readsBack(name: string, digest: string): Promise<boolean> {
  const res = await call(`/v2/${name}/blobs/${digest}`);
  return res.status === 200 && (await sha256(await bodyBytes(res))) === digest;
}

async function mount(name: string, digest: string, from: string): Promise<Response> {
  return call(`/v2/${name}/blobs/uploads/?mount=${digest}&from=${from}`, { method: "POST" });
}

/** Pushes an image (config + one layer) under a tag; returns its digests. */
async function pushImage(name: string, tag: string, seed: number) {
  const image = await imageManifest(name, seed);
  expect((await putManifest(name, tag, image.text)).status).toBe(201);
  return image;
}

/** An artifact manifest whose subject is `subject`, pushed by digest. */
async function pushReferrer(name: string, subject: { digest: string; size: number }, seed: number, tag?: string) {
  const blob = await pushBlob(name, `signature ${seed}`);
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: "application/vnd.example.signature",
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" },
    layers: [{ mediaType: "application/octet-stream", digest: blob, size: `signature ${seed}`.length }],
    subject: { mediaType: OCI_MANIFEST, ...subject },
  });
  const digest = await sha256(text);
  expect((await putManifest(name, tag ?? digest, text)).status).toBe(201);
  return { digest, blob };
}

describe("garbage collection endpoint", () => {
  it("answers {\"success\":true} as serverless-registry does", async () => {
    const name = uniqueName("gc");
    await pushImage(name, "v1", 1);
    const res = await call(`/v2/${name}/gc?mode=unreferenced`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('{"success":true}');
    expect((await call(`/v2/${name}/gc`, { method: "POST" })).status).toBe(200);
  });

  it("refuses bad parameters and read-only users with OCI errors", async () => {
    const name = uniqueName("gc");
    for (const query of ["mode=everything", "dry_run=maybe", "grace=-1", "grace=soon"]) {
      const res = await call(`/v2/${name}/gc?${query}`, { method: "POST" });
      expect(res.status, query).toBe(400);
      expect(await errorCode(res)).toBe("UNSUPPORTED");
    }
    const denied = await call(`/v2/${name}/gc`, { method: "POST", auth: RO });
    expect(denied.status).toBe(403);
    expect(await errorCode(denied)).toBe("DENIED");
    expect((await call(`/v2/${name}/gc`, { method: "POST", auth: null })).status).toBe(401);
    expect((await call(`/v2/_gc`, { method: "POST", auth: RO })).status).toBe(403);
  });

  it("lets only tokens for every repository run a registry-wide collection", async () => {
    const key = await makeKey("ES256");
    const jwtEnv = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    const scoped = await sign(key, claims(["pull", "push"], { repositories: ["team/*"] }));
    const everything = await sign(key, claims(["pull", "push"]));
    const asScoped = await call("/v2/_gc?dry_run=true", { method: "POST", auth: `Bearer ${scoped}`, env: jwtEnv });
    expect(asScoped.status).toBe(403);
    expect(await errorCode(asScoped)).toBe("DENIED");
    expect((await call("/v2/team/app/gc?dry_run=true", { method: "POST", auth: `Bearer ${scoped}`, env: jwtEnv })).status).toBe(200);
    expect((await call("/v2/_gc?dry_run=true", { method: "POST", auth: `Bearer ${everything}`, env: jwtEnv })).status).toBe(200);
  });

  it("answers what it found (dry_run, report) only to principals that may pull as well as push", async () => {
    const key = await makeKey("ES256");
    const jwtEnv = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    const pushOnly = `Bearer ${await sign(key, claims(["push"]))}`;
    const pullPush = `Bearer ${await sign(key, claims(["pull", "push"]))}`;
    const name = uniqueName("gc");
    const image = await pushImage(name, "v1", 31);
    const stray = await pushBlob(name, "a blob a push-only token may not learn about");
    const before = await keysUnder(`${name}/`);

    for (const path of [
      `/v2/${name}/gc?dry_run=true&grace=0`,
      `/v2/${name}/gc?report=true&grace=0`,
      `/v2/${name}/gc?mode=untagged&dry_run=1`,
      "/v2/_gc?dry_run=true",
      "/v2/_gc?report=true",
    ]) {
      const res = await call(path, { method: "POST", auth: pushOnly, env: jwtEnv });
      expect(res.status, path).toBe(403);
      const text = await res.text();
      expect(JSON.parse(text).errors[0].code).toBe("DENIED");
      expect(text).toContain("pull");
      expect(text).not.toContain(stray);
      expect(text).not.toContain(image.digest);
    }
    // Refused before collecting: the stray blob (and everything else) is still there.
    expect(await keysUnder(`${name}/`)).toEqual(before);

    const dry = await call(`/v2/${name}/gc?dry_run=true&grace=0`, { method: "POST", auth: pullPush, env: jwtEnv });
    expect(dry.status).toBe(200);
    expect(((await dry.json()) as Report).blobs.map((b) => b.digest)).toEqual([stray]);
    const all = await call("/v2/_gc?dry_run=true", { method: "POST", auth: pullPush, env: jwtEnv });
    expect(all.status).toBe(200);
    expect(await all.json()).toMatchObject({ success: true, dryRun: true });

    // A plain run reveals nothing, so push is enough (GC is a push-level operation).
    const plain = await call(`/v2/${name}/gc?grace=0`, { method: "POST", auth: pushOnly, env: jwtEnv });
    expect(plain.status).toBe(200);
    expect(await plain.text()).toBe('{"success":true}');
    expect((await call(`/v2/${name}/blobs/${stray}`, { method: "HEAD" })).status).toBe(404);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "HEAD" })).status).toBe(200);
  });

  it("checks report=true before collecting anything", async () => {
    const name = uniqueName("gc");
    await pushImage(name, "v1", 32);
    await pushBlob(name, "stray blob kept by a bad report value");
    const before = await keysUnder(`${name}/`);
    const res = await call(`/v2/${name}/gc?grace=0&report=maybe`, { method: "POST" });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("UNSUPPORTED");
    expect(await keysUnder(`${name}/`)).toEqual(before);
  });
});

describe("unreferenced mode", () => {
  it("deletes blobs no manifest references and keeps the others, untagged manifests' included", async () => {
    const name = uniqueName("unref");
    const image = await pushImage(name, "v1", 2);
    const stray = await pushBlob(name, "uploaded but never referenced");
    let report = await gc(name);
    expect(report.blobs.map((b) => b.digest)).toEqual([stray]);
    expect(report.manifests).toEqual([]);
    expect(await blobStatus(name, stray)).toBe(404);
    for (const blob of image.blobs) expect(await readsBack(name, blob)).toBe(true);

    // Without its tag the manifest still references its blobs in this mode.
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    report = await gc(name);
    expect(report.blobs).toEqual([]);
    expect(await manifestStatus(name, image.digest)).toBe(200);

    // Deleted by digest, its blobs go.
    expect((await call(`/v2/${name}/manifests/${image.digest}`, { method: "DELETE" })).status).toBe(202);
    report = await gc(name);
    expect(report.blobs.map((b) => b.digest).sort()).toEqual([...image.blobs].sort());
    expect(await keysUnder(`${name}/blobs/`)).toEqual([]);
  });

  it("keeps blobs newer than the grace period (a push in progress) unless told otherwise", async () => {
    const name = uniqueName("grace");
    const stray = await pushBlob(name, "a layer whose manifest is not pushed yet");
    const kept = await call(`/v2/${name}/gc?report=true`, { method: "POST" });
    expect(((await kept.json()) as Report).blobs).toEqual([]);
    expect(await blobStatus(name, stray)).toBe(200);
    await gc(name);
    expect(await blobStatus(name, stray)).toBe(404);
  });

  it("reports in a dry run what it would delete and how many bytes, and deletes nothing", async () => {
    const name = uniqueName("dry");
    const image = await pushImage(name, "v1", 3);
    const stray = bytesOf(5000, 33);
    const strayDigest = await pushBlob(name, stray);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    const before = await keysUnder(`${name}/`);

    const res = await call(`/v2/${name}/gc?mode=untagged&dry_run=true&grace=0`, { method: "POST" });
    expect(res.status).toBe(200);
    const report = (await res.json()) as Report & { dryRun: boolean };
    expect(report.dryRun).toBe(true);
    expect(report.manifests.map((m) => m.digest)).toEqual([image.digest]);
    expect(report.blobs.map((b) => b.digest).sort()).toEqual([...image.blobs, strayDigest].sort());
    const manifestSize = new TextEncoder().encode(image.text).byteLength;
    const blobBytes = report.blobs.reduce((sum, b) => sum + b.size, 0);
    expect(report.blobs.find((b) => b.digest === strayDigest)?.size).toBe(5000);
    expect(report.bytes).toBe(manifestSize + blobBytes);
    expect(await keysUnder(`${name}/`)).toEqual(before);
  });

  it("deletes more than 1,000 blobs in one run (R2 deletes at most 1,000 keys per call)", async () => {
    const name = uniqueName("many");
    const digests: string[] = [];
    for (let i = 0; i < 1100; i++) digests.push(await sha256(`blob ${i}`));
    for (let i = 0; i < digests.length; i += 100) {
      await Promise.all(digests.slice(i, i + 100).map((d, j) => env.REGISTRY.put(`${name}/blobs/${d}`, `blob ${i + j}`)));
    }
    const report = await gc(name);
    expect(report.blobs.length).toBe(1100);
    expect(await keysUnder(`${name}/blobs/`)).toEqual([]);
  }, 60_000);
});

describe("untagged mode", () => {
  it("deletes manifests nothing reaches, then their blobs; keeps what tags reach", async () => {
    const name = uniqueName("untagged");
    const old = await pushImage(name, "v1", 4);
    const current = await pushImage(name, "v2", 5);
    // v1 moves to the current image: the old one is untagged now.
    expect((await putManifest(name, "v1", current.text)).status).toBe(201);
    const report = await gc(name, "mode=untagged");
    expect(report.manifests.map((m) => m.digest)).toEqual([old.digest]);
    expect(report.blobs.map((b) => b.digest).sort()).toEqual([...old.blobs].sort());
    expect(await manifestStatus(name, old.digest)).toBe(404);
    expect(await manifestStatus(name, "v1")).toBe(200);
    expect(await manifestStatus(name, "v2")).toBe(200);
    for (const blob of current.blobs) expect(await readsBack(name, blob)).toBe(true);
  });

  it("keeps an index's children and the referrers of live subjects; removes them with the index", async () => {
    const name = uniqueName("index");
    const amd = await imageManifest(name, 6);
    const arm = await imageManifest(name, 7);
    for (const child of [amd, arm]) expect((await putManifest(name, child.digest, child.text)).status).toBe(201);
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [amd, arm].map((child, i) => ({
        mediaType: OCI_MANIFEST,
        digest: child.digest,
        size: new TextEncoder().encode(child.text).byteLength,
        platform: { architecture: i === 0 ? "amd64" : "arm64", os: "linux" },
      })),
    });
    const indexDigest = await sha256(index);
    expect((await putManifest(name, "latest", index, OCI_INDEX)).status).toBe(201);
    const signature = await pushReferrer(name, { digest: indexDigest, size: new TextEncoder().encode(index).byteLength }, 1);

    let report = await gc(name, "mode=untagged");
    expect(report.manifests).toEqual([]);
    expect(report.blobs).toEqual([]);
    const referrers = await call(`/v2/${name}/referrers/${indexDigest}`);
    expect(((await referrers.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([signature.digest]);

    expect((await call(`/v2/${name}/manifests/latest`, { method: "DELETE" })).status).toBe(202);
    report = await gc(name, "mode=untagged");
    expect(report.manifests.map((m) => m.digest).sort()).toEqual([amd.digest, arm.digest, indexDigest, signature.digest].sort());
    expect(report.blobs.map((b) => b.digest).sort()).toEqual([...amd.blobs, ...arm.blobs, signature.blob].sort());
    expect(await keysUnder(`${name}/`)).toEqual([]);
  });

  it("keeps a tagged referrer, and its referrers entry, after its subject is removed", async () => {
    const name = uniqueName("tagged-referrer");
    const image = await pushImage(name, "v1", 8);
    const sbom = await pushReferrer(name, { digest: image.digest, size: new TextEncoder().encode(image.text).byteLength }, 2, "sbom");
    expect((await call(`/v2/${name}/manifests/${image.digest}`, { method: "DELETE" })).status).toBe(202);
    const report = await gc(name, "mode=untagged");
    expect(report.manifests).toEqual([]);
    expect(report.blobs.map((b) => b.digest).sort()).toEqual([...image.blobs].sort());
    expect(await manifestStatus(name, "sbom")).toBe(200);
    expect(await readsBack(name, sbom.blob)).toBe(true);
    const referrers = await call(`/v2/${name}/referrers/${image.digest}`);
    expect(((await referrers.json()) as { manifests: { digest: string }[] }).manifests.map((m) => m.digest)).toEqual([sbom.digest]);
  });

  it("works on a bucket written by serverless-registry (checksums only, its referrers entries)", async () => {
    const name = uniqueName("original");
    const config = JSON.stringify({ architecture: "amd64", os: "linux" });
    const layer = bytesOf(3000, 9);
    const [configDigest, layerDigest] = [await sha256(config), await sha256(layer)];
    await env.REGISTRY.put(`${name}/blobs/${configDigest}`, config, { sha256: hexOf(configDigest) });
    await env.REGISTRY.put(`${name}/blobs/${layerDigest}`, layer, { sha256: hexOf(layerDigest) });
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: layerDigest, size: layer.length }],
    });
    const digest = await sha256(manifest);
    const original = { sha256: hexOf(digest), httpMetadata: { contentType: OCI_MANIFEST }, customMetadata: { hasSubject: "false" } };
    await env.REGISTRY.put(`${name}/manifests/${digest}`, manifest, original);
    await env.REGISTRY.put(`${name}/manifests/old`, manifest, original);
    // A referrers entry for a manifest that is not there (left by the original's delete).
    const ghost = await sha256("gone");
    await env.REGISTRY.put(`${name}/_referrers/${digest}/${ghost}`, JSON.stringify({ mediaType: OCI_MANIFEST, digest: ghost, size: 4 }));
    await env.REGISTRY.put(`_repositories/${name}`, "");

    let report = await gc(name, "mode=untagged");
    expect(report.manifests).toEqual([]);
    expect(report.blobs).toEqual([]);
    expect(await keysUnder(`${name}/_referrers/`)).toEqual([]);

    expect((await call(`/v2/${name}/manifests/old`, { method: "DELETE" })).status).toBe(202);
    report = await gc(name, "mode=untagged");
    expect(report.manifests.map((m) => m.digest)).toEqual([digest]);
    expect(await keysUnder(`${name}/`)).toEqual([]);
  });
});

describe("shared bytes", () => {
  it("keeps an upload's bytes while another repository (a nested one) points at them", async () => {
    const parent = uniqueName("shared");
    const child = `${parent}/nested`;
    // Above 16 MiB, so the upload's bytes are published as a pointer (smaller blobs are copied).
    const data = bytesOf(20 * MiB, 10);
    const digest = await pushBlob(parent, data);
    const dataKey = (await env.REGISTRY.head(`${parent}/blobs/${digest}`))?.customMetadata?.["r2-registry-data"];
    expect(dataKey).toMatch(/^_data\//);
    expect((await mount(child, digest, parent)).status).toBe(201);

    // Unreferenced in the parent: its pointer goes, the bytes stay for the nested repository.
    let report = await gc(parent);
    expect(report.blobs.map((b) => b.digest)).toEqual([digest]);
    expect(report.bytes).toBe(0);
    expect(await blobStatus(parent, digest)).toBe(404);
    expect(await readsBack(child, digest)).toBe(true);

    // The last pointer goes: so do the bytes.
    report = await gc(child);
    expect(report.bytes).toBe(data.byteLength);
    expect(await env.REGISTRY.head(dataKey!)).toBeNull();
  });

  it("collects a repository without touching the nested repositories under its name", async () => {
    const parent = uniqueName("outer");
    const child = `${parent}/inner`;
    const inner = await pushImage(child, "v1", 11);
    const stray = await pushBlob(child, "stray in the nested repository");
    const outerStray = await pushBlob(parent, "stray in the outer repository");
    const report = await gc(parent, "mode=untagged");
    expect(report.blobs.map((b) => b.digest)).toEqual([outerStray]);
    expect(await blobStatus(child, stray)).toBe(200);
    for (const blob of inner.blobs) expect(await readsBack(child, blob)).toBe(true);
    expect(await manifestStatus(child, "v1")).toBe(200);
  });

  it("keeps bytes that serverless-registry symlinks point at until the symlinks are gone", async () => {
    const holder = uniqueName("holder");
    const linked = uniqueName("linked");
    const data = bytesOf(17 * MiB, 12);
    const digest = await sha256(data);
    await env.REGISTRY.put(`${holder}/blobs/${digest}`, data, { sha256: hexOf(digest) });
    await env.REGISTRY.put(`${linked}/blobs/${digest}`, `${holder}/blobs/${digest}`, {
      customMetadata: { "X-Serverless-Registry-Symlink": holder },
    });
    for (const name of [holder, linked]) await env.REGISTRY.put(`_repositories/${name}`, "");
    await env.REGISTRY.delete("_meta/links-v2-backfilled");

    let report = await gc(holder);
    expect(report.blobs).toEqual([]);
    expect(report.shared.map((b) => b.digest)).toEqual([digest]);
    expect(await readsBack(linked, digest)).toBe(true);

    report = await gc(linked);
    expect(report.blobs).toEqual([{ digest, size: expect.any(Number), kind: "symlink" }]);
    report = await gc(holder);
    expect(report.blobs.map((b) => b.digest)).toEqual([digest]);
    expect(report.bytes).toBe(data.byteLength);
    expect(await env.REGISTRY.head(`${holder}/blobs/${digest}`)).toBeNull();
  });
});

describe("registry-wide hygiene", () => {
  async function collectAll(query: string) {
    const res = await call(`/v2/_gc?report=true&${query}`, { method: "POST" });
    expect(res.status).toBe(200);
    return (await res.json()) as {
      repositories: Report[];
      uploads: { sessions: number; objects: number };
      orphans: { objects: number; bytes: number };
    };
  }

  it("refuses an upload_age beyond the 7 days after which R2 aborts unfinished multipart uploads", async () => {
    const res = await call(`/v2/_gc?upload_age=${8 * 24 * 3600}`, { method: "POST" });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("UNSUPPORTED");
  });

  it("removes abandoned uploads, their pending bytes and serverless-registry's upload leftovers", async () => {
    const name = uniqueName("abandoned");
    const { location } = await startUpload(name);
    // A resumable chunk (Content-Range): its bytes wait in the upload's own data key.
    expect((await call(location, { method: "PATCH", body: bytesOf(1000, 13), headers: { "Content-Range": "0-999" } })).status).toBe(202);
    const id = location.split("/").pop()!.split("?")[0]!;
    expect((await keysUnder(`_uploads/${id}`)).length).toBe(2);
    // A small blob sent whole went to its blob key; its session's records are abandoned too.
    const whole = await startUpload(name);
    expect((await call(whole.location, { method: "PATCH", body: bytesOf(1000, 14) })).status).toBe(202);
    const wholeId = whole.location.split("/").pop()!.split("?")[0]!;
    expect((await keysUnder(`_uploads/${wholeId}`)).length).toBe(2);
    const { dataKey } = JSON.parse((await (await env.REGISTRY.get(`_uploads/${id}`))!.text())) as { dataKey: string };
    expect((await env.REGISTRY.head(dataKey))?.size).toBe(1000);
    const leftovers = [`${name}/uploads/${crypto.randomUUID()}`, `${crypto.randomUUID()}-helper`];
    for (const key of leftovers) await env.REGISTRY.put(key, "left behind");
    await env.REGISTRY.put(`_repositories/${name}`, "");

    // Not old enough yet under the default age.
    let report = await collectAll("dry_run=true");
    expect(await keysUnder(`_uploads/${id}`)).toHaveLength(2);

    report = await collectAll("upload_age=0");
    expect(report.uploads.sessions).toBeGreaterThanOrEqual(2);
    expect(await keysUnder(`_uploads/${id}`)).toEqual([]);
    expect(await keysUnder(`_uploads/${wholeId}`)).toEqual([]);
    // Its bytes are the orphan sweep's, after the grace period (an hour by default).
    expect(await env.REGISTRY.head(dataKey)).not.toBeNull();
    await collectAll("grace=0");
    expect(await env.REGISTRY.head(dataKey)).toBeNull();
    for (const key of leftovers) expect(await env.REGISTRY.head(key)).toBeNull();
    const patch = await call(location, { method: "PATCH", body: "more" });
    expect(patch.status).toBe(404);
    expect(await errorCode(patch)).toBe("BLOB_UPLOAD_UNKNOWN");
  });

  it("removes an abandoned upload's segments and its multipart object, and keeps an open upload's", async () => {
    const name = uniqueName("multipart");
    const open = async (body: Uint8Array | ReadableStream) => {
      const { location } = await startUpload(name);
      // A known length is sent as a resumable chunk (Content-Range), so it is cut into segments.
      const headers: Record<string, string> =
        body instanceof Uint8Array ? { "Content-Length": String(body.byteLength), "Content-Range": `0-${body.byteLength - 1}` } : {};
      const patch = await call(location, { method: "PATCH", body, headers, duplex: "half" } as RequestInit);
      expect(patch.status).toBe(202);
      const id = location.split("/").pop()!.split("?")[0]!;
      return { id, ...(JSON.parse((await (await env.REGISTRY.get(`_uploads/${id}`))!.text())) as { dataKey: string; segments: number[] }) };
    };
    // A resumable chunk: segments of 16 MiB and the rest; unknown length: one multipart object.
    const known = await open(bytesOf(40 * MiB, 14));
    expect(known.segments).toEqual([16 * MiB, 24 * MiB]);
    const chunked = await open(new Response(bytesOf(11 * MiB, 15)).body!);
    expect(chunked.segments).toEqual([11 * MiB]);
    const live = await open(bytesOf(1000, 16));

    // Open sessions' bytes are in use, whatever the grace period.
    await collectAll("grace=0");
    for (const { dataKey } of [known, chunked, live]) expect(await env.REGISTRY.head(dataKey)).not.toBeNull();
    // Abandoned (every session counts with upload_age=0): sessions and bytes go.
    const report = await collectAll("upload_age=0&grace=0");
    expect(report.uploads.sessions).toBeGreaterThanOrEqual(3);
    for (const { dataKey } of [known, chunked, live]) {
      expect(await env.REGISTRY.head(dataKey)).toBeNull();
      expect((await env.REGISTRY.list({ prefix: `${dataKey}/` })).objects).toEqual([]);
    }
  });

  it("keeps the bytes an upload's first request is writing before the session names them", async () => {
    const name = uniqueName("inflight");
    const { location } = await startUpload(name);
    const id = location.split("/").pop()!.split("?")[0]!;
    const { dataKey } = JSON.parse(await (await env.REGISTRY.get(`_uploads/${id}/created`))!.text()) as { dataKey: string };
    // A first request writes under a data key of its own, made from the session's, and records
    // the session only once its bytes are in.
    const writing = `${dataKey}.0123abcd`;
    await env.REGISTRY.put(writing, bytesOf(1000, 17));
    await collectAll("grace=0");
    expect(await env.REGISTRY.head(writing)).not.toBeNull();
    // Once the session is gone, nothing uses them.
    expect((await call(location, { method: "DELETE" })).status).toBe(204);
    await collectAll("grace=0");
    expect(await env.REGISTRY.head(writing)).toBeNull();
  });

  it("deletes upload bytes no pointer uses, and keeps those in use", async () => {
    const name = uniqueName("orphans");
    const used = await pushBlob(name, bytesOf(11 * MiB, 15));
    const image = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: "application/vnd.oci.empty.v1+json", digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", size: 2, data: "e30=" },
      layers: [{ mediaType: "application/octet-stream", digest: used, size: 11 * MiB }],
    });
    expect((await putManifest(name, "v1", image)).status).toBe(201);
    const orphan = `_data/${crypto.randomUUID()}`;
    await env.REGISTRY.put(orphan, bytesOf(2000, 16));
    const report = await collectAll("grace=0");
    expect(report.orphans.objects).toBeGreaterThanOrEqual(1);
    expect(await env.REGISTRY.head(orphan)).toBeNull();
    expect(await readsBack(name, used)).toBe(true);
  });

  it("keeps the bytes of an upload published before its repository's first manifest", async () => {
    // The repository is not in the catalog yet (that comes with a manifest): only the links index
    // knows its pointer. Found by the concurrency test: the manifest pushed next referenced a blob
    // whose bytes were gone.
    const name = uniqueName("early");
    const digest = await pushBlob(name, bytesOf(11 * MiB, 17));
    expect(await env.REGISTRY.head(`_repositories/${name}`)).toBeNull();
    await collectAll("grace=0");
    expect(await readsBack(name, digest)).toBe(true);
  });

  it("runs from a cron trigger with the configured mode, grace period and upload age", async () => {
    const name = uniqueName("cron");
    const image = await pushImage(name, "v1", 17);
    const stray = await pushBlob(name, "collected by the cron run");
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE" })).status).toBe(202);
    const cronEnv = { ...env, GC_MODE: "untagged", GC_GRACE_PERIOD: "0", GC_UPLOAD_MAX_AGE: "0" } as Env;
    await worker.scheduled({ cron: "0 4 * * *", scheduledTime: Date.now(), noRetry() {} } as ScheduledController, cronEnv);
    expect(await blobStatus(name, stray)).toBe(404);
    expect(await manifestStatus(name, image.digest)).toBe(404);
    for (const blob of image.blobs) expect(await blobStatus(name, blob)).toBe(404);
  });
});

describe("collection and pushes at the same time", () => {
  it("makes a manifest push wait while a sweep deletes, then checks against what is left", async () => {
    const name = uniqueName("fence");
    const image = await imageManifest(name, 18);
    // A sweep holds the repository for another 1.5 s.
    await env.REGISTRY.put(`_gc/${name}/_state`, JSON.stringify({ epoch: 1, sweeping: { id: "other", until: Date.now() + 1500 } }));
    const started = Date.now();
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(await keysUnder(`_gc/${name}/_intents/`)).toEqual([]);
  });

  it("spares the blobs of a push announced while it decided what to delete", async () => {
    const name = uniqueName("announced");
    const image = await imageManifest(name, 19);
    // A push in progress (its intent written, its manifest not yet stored).
    await env.REGISTRY.put(`_gc/${name}/_intents/${crypto.randomUUID()}`, JSON.stringify({ at: Date.now(), digests: [image.digest, ...image.blobs] }));
    const report = await gc(name);
    expect(report.blobs).toEqual([]);
    for (const blob of image.blobs) expect(await blobStatus(name, blob)).toBe(200);
    // An intent left by a push that died long ago protects nothing, and is removed.
    const stale = `_gc/${name}/_intents/${crypto.randomUUID()}`;
    await env.REGISTRY.delete(await keysUnder(`_gc/${name}/_intents/`));
    await env.REGISTRY.put(stale, JSON.stringify({ at: Date.now() - 3600_000, digests: image.blobs }));
    expect((await gc(name)).blobs.length).toBe(2);
    expect(await env.REGISTRY.head(stale)).toBeNull();
  });
});
