import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  bodyBytes,
  bytesOf,
  call,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  errorCode,
  hexOf,
  imageManifest,
  OCI_INDEX,
  OCI_MANIFEST,
  pushBlob,
  putManifest,
  sha256,
  uniqueName,
} from "./helpers";

/** Pushes a Docker schema 2 image (config + one layer) and returns its manifest text and digest. */
async function dockerManifest(name: string, seed = 1): Promise<{ text: string; digest: string }> {
  const config = JSON.stringify({ architecture: "arm64", os: "linux", docker: seed });
  const layer = bytesOf(700, seed + 100);
  const configDigest = await pushBlob(name, config);
  const layerDigest = await pushBlob(name, layer);
  const text = JSON.stringify(
    {
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: { mediaType: "application/vnd.docker.container.image.v1+json", size: config.length, digest: configDigest },
      layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: layer.byteLength, digest: layerDigest }],
    },
    null,
    3,
  );
  return { text, digest: await sha256(text) };
}

function indexOf(mediaType: string, children: { digest: string; text: string; mediaType: string; arch: string }[]): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: children.map((c) => ({
      mediaType: c.mediaType,
      digest: c.digest,
      size: new TextEncoder().encode(c.text).byteLength,
      platform: { architecture: c.arch, os: "linux" },
    })),
  });
}

describe("pushing and pulling manifests", () => {
  it("PUT by tag answers 201 with Location and Docker-Content-Digest", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const res = await putManifest(name, "v1", m.text);
    expect(res.status).toBe(201);
    expect(res.headers.get("Docker-Content-Digest")).toBe(m.digest);
    const location = res.headers.get("Location")!;
    expect(location).toMatch(new RegExp(`^/v2/${name}/manifests/(v1|${m.digest})$`));
    const follow = await call(location);
    expect(follow.status).toBe(200);
    expect(await follow.text()).toBe(m.text);
  });

  it("GET by tag and by digest returns the exact bytes under the pushed Content-Type", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    expect((await putManifest(name, "latest", m.text)).status).toBe(201);
    for (const ref of ["latest", m.digest]) {
      const res = await call(`/v2/${name}/manifests/${ref}`, { headers: { Accept: OCI_MANIFEST } });
      expect(res.status, ref).toBe(200);
      expect(res.headers.get("Content-Type")).toBe(OCI_MANIFEST);
      expect(res.headers.get("Docker-Content-Digest")).toBe(m.digest);
      expect(res.headers.get("Content-Length")).toBe(String(m.text.length));
      expect(await res.text()).toBe(m.text);
    }
  });

  it("HEAD gives Content-Length, Content-Type and Docker-Content-Digest, no body", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);
    for (const ref of ["v1", m.digest]) {
      const res = await call(`/v2/${name}/manifests/${ref}`, { method: "HEAD" });
      expect(res.status).toBe(200);
      expect(res.headers.get("Content-Length")).toBe(String(m.text.length));
      expect(res.headers.get("Content-Type")).toBe(OCI_MANIFEST);
      expect(res.headers.get("Docker-Content-Digest")).toBe(m.digest);
      expect((await bodyBytes(res)).byteLength).toBe(0);
    }
  });

  it("keeps the exact bytes of a manifest with unusual formatting", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const text = `  ${JSON.stringify(JSON.parse(m.text), null, "\t")}\n\n`;
    const res = await putManifest(name, "pretty", text);
    expect(res.status).toBe(201);
    expect(res.headers.get("Docker-Content-Digest")).toBe(await sha256(text));
    expect(await (await call(`/v2/${name}/manifests/pretty`)).text()).toBe(text);
  });

  it("accepts an OCI manifest without a top-level mediaType when Content-Type names the type", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const { mediaType: _, ...rest } = JSON.parse(m.text) as Record<string, unknown>;
    const text = JSON.stringify(rest);
    const res = await putManifest(name, "bare", text, OCI_MANIFEST);
    expect(res.status).toBe(201);
    const get = await call(`/v2/${name}/manifests/bare`);
    expect(get.status).toBe(200);
    expect(get.headers.get("Content-Type")).toBe(OCI_MANIFEST);
    expect(await get.text()).toBe(text);
  });

  it("accepts a Docker schema 2 manifest and a Docker manifest list", async () => {
    const name = uniqueName("man");
    const amd = await dockerManifest(name, 1);
    const arm = await dockerManifest(name, 2);
    expect((await putManifest(name, amd.digest, amd.text, DOCKER_MANIFEST)).status).toBe(201);
    expect((await putManifest(name, arm.digest, arm.text, DOCKER_MANIFEST)).status).toBe(201);
    const list = indexOf(DOCKER_MANIFEST_LIST, [
      { ...amd, mediaType: DOCKER_MANIFEST, arch: "amd64" },
      { ...arm, mediaType: DOCKER_MANIFEST, arch: "arm64" },
    ]);
    const put = await putManifest(name, "multi", list, DOCKER_MANIFEST_LIST);
    expect(put.status).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(await sha256(list));

    const get = await call(`/v2/${name}/manifests/multi`);
    expect(get.status).toBe(200);
    expect(get.headers.get("Content-Type")).toBe(DOCKER_MANIFEST_LIST);
    expect(await get.text()).toBe(list);
    const child = await call(`/v2/${name}/manifests/${amd.digest}`);
    expect(child.headers.get("Content-Type")).toBe(DOCKER_MANIFEST);
    expect(await child.text()).toBe(amd.text);
  });

  it("accepts an OCI image index of pushed manifests", async () => {
    const name = uniqueName("man");
    const a = await imageManifest(name, 1);
    const b = await imageManifest(name, 2);
    expect((await putManifest(name, a.digest, a.text)).status).toBe(201);
    expect((await putManifest(name, b.digest, b.text)).status).toBe(201);
    const index = indexOf(OCI_INDEX, [
      { ...a, mediaType: OCI_MANIFEST, arch: "amd64" },
      { ...b, mediaType: OCI_MANIFEST, arch: "arm64" },
    ]);
    const put = await putManifest(name, "v1", index, OCI_INDEX);
    expect(put.status).toBe(201);
    const head = await call(`/v2/${name}/manifests/v1`, { method: "HEAD" });
    expect(head.headers.get("Content-Type")).toBe(OCI_INDEX);
    expect(head.headers.get("Docker-Content-Digest")).toBe(await sha256(index));
  });

  it("PUT by digest with ?tag=a&tag=b tags both", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const res = await call(`/v2/${name}/manifests/${m.digest}?tag=a&tag=b`, {
      method: "PUT",
      body: m.text,
      headers: { "Content-Type": OCI_MANIFEST },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("Docker-Content-Digest")).toBe(m.digest);
    for (const tag of ["a", "b"]) {
      const get = await call(`/v2/${name}/manifests/${tag}`);
      expect(get.status, tag).toBe(200);
      expect(get.headers.get("Docker-Content-Digest")).toBe(m.digest);
    }
    const tags = await call(`/v2/${name}/tags/list`);
    expect(await tags.json()).toEqual({ name, tags: ["a", "b"] });
  });

  it("accepts a manifest whose subject is not (yet) in the registry, answering OCI-Subject", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const subject = await sha256("a manifest pushed later");
    const parsed = JSON.parse(m.text) as Record<string, unknown>;
    parsed.subject = { mediaType: OCI_MANIFEST, digest: subject, size: 123 };
    const text = JSON.stringify(parsed);
    const res = await putManifest(name, await sha256(text), text);
    expect(res.status).toBe(201);
    expect(res.headers.get("OCI-Subject")).toBe(subject);
  });

  it("does not require non-distributable (foreign) layers to be in the registry", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const parsed = JSON.parse(m.text) as { layers: unknown[] };
    parsed.layers.unshift({
      mediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      digest: await sha256("windows base layer"),
      size: 1000,
      urls: ["https://example.com/layer.tar.gz"],
    });
    const res = await putManifest(name, "win", JSON.stringify(parsed));
    expect(res.status).toBe(201);
  });

  it("re-tagging moves a tag to the new manifest", async () => {
    const name = uniqueName("man");
    const one = await imageManifest(name, 1);
    const two = await imageManifest(name, 2);
    expect((await putManifest(name, "latest", one.text)).status).toBe(201);
    expect((await putManifest(name, "latest", two.text)).status).toBe(201);
    const get = await call(`/v2/${name}/manifests/latest`);
    expect(get.headers.get("Docker-Content-Digest")).toBe(two.digest);
    expect((await call(`/v2/${name}/manifests/${one.digest}`, { method: "HEAD" })).status).toBe(200);
  });
});

describe("refused manifests", () => {
  it("a manifest referencing a missing blob is 400 MANIFEST_BLOB_UNKNOWN", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const parsed = JSON.parse(m.text) as { layers: { digest: string }[] };
    parsed.layers[0]!.digest = await sha256("layer never pushed");
    const res = await putManifest(name, "v1", JSON.stringify(parsed));
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_BLOB_UNKNOWN");
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(404);
  });

  it("a manifest referencing a blob of another repository is 400 MANIFEST_BLOB_UNKNOWN", async () => {
    const a = uniqueName("man");
    const b = uniqueName("man");
    const m = await imageManifest(a);
    const res = await putManifest(b, "v1", m.text);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_BLOB_UNKNOWN");
  });

  it("an index referencing a missing child manifest is 400 MANIFEST_BLOB_UNKNOWN", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const index = indexOf(OCI_INDEX, [{ ...m, mediaType: OCI_MANIFEST, arch: "amd64" }]);
    const res = await putManifest(name, "v1", index, OCI_INDEX);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_BLOB_UNKNOWN");
  });

  it("PUT by digest with a body of another digest is 400 DIGEST_INVALID", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const other = await sha256("something else");
    const res = await putManifest(name, other, m.text);
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("DIGEST_INVALID");
    expect((await call(`/v2/${name}/manifests/${other}`)).status).toBe(404);
    expect((await call(`/v2/${name}/manifests/${m.digest}`)).status).toBe(404);
  });

  it("a body larger than 4 MiB is 413", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const parsed = JSON.parse(m.text) as Record<string, unknown>;
    parsed.annotations = { padding: "x".repeat(4 * 1024 * 1024 + 1) };
    const res = await putManifest(name, "huge", JSON.stringify(parsed));
    expect(res.status).toBe(413);
    expect((await call(`/v2/${name}/manifests/huge`)).status).toBe(404);
  });

  it("a body of exactly 4 MiB is accepted", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const parsed = JSON.parse(m.text) as Record<string, unknown>;
    parsed.annotations = { padding: "" };
    const base = JSON.stringify(parsed).length;
    parsed.annotations = { padding: "x".repeat(4 * 1024 * 1024 - base) };
    const text = JSON.stringify(parsed);
    expect(text.length).toBe(4 * 1024 * 1024);
    const res = await putManifest(name, "big", text);
    expect(res.status).toBe(201);
    const head = await call(`/v2/${name}/manifests/big`, { method: "HEAD" });
    expect(head.headers.get("Content-Length")).toBe(String(4 * 1024 * 1024));
  });

  it("a body that is not JSON is 400 MANIFEST_INVALID", async () => {
    const name = uniqueName("man");
    const res = await putManifest(name, "v1", "this is { not json");
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_INVALID");
  });

  it("JSON that is not a manifest is 400 MANIFEST_INVALID", async () => {
    const name = uniqueName("man");
    const res = await putManifest(name, "v1", JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: "nope" }));
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("MANIFEST_INVALID");
  });

  it("an invalid tag is 400 TAG_INVALID", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    for (const tag of ["-leading-dash", ".leading-dot", "t".repeat(129), "has%20space"]) {
      const res = await putManifest(name, tag, m.text);
      expect(res.status, tag).toBe(400);
      expect(await errorCode(res), tag).toBe("TAG_INVALID");
    }
  });

  it("an invalid repository name is 400 NAME_INVALID", async () => {
    const m = await imageManifest(uniqueName("man"));
    const bad = ["Upper/case", "double..dot", "a/..b", "a//b", "trailing-", `${"a".repeat(256)}`, `${"ab/".repeat(90)}c`];
    for (const name of bad) {
      const put = await putManifest(name, "v1", m.text);
      expect(put.status, `PUT ${name}`).toBe(400);
      expect(await errorCode(put), `PUT ${name}`).toBe("NAME_INVALID");
      const get = await call(`/v2/${name}/manifests/v1`);
      expect(get.status, `GET ${name}`).toBe(400);
      expect(await errorCode(get), `GET ${name}`).toBe("NAME_INVALID");
    }
    // A name is at most 255 characters, not at least: 255 is fine.
    expect((await call(`/v2/${"a".repeat(255)}/manifests/v1`)).status).toBe(404);
  });

  it("a `..` component in the name is 400 NAME_INVALID", async () => {
    // URL parsers fold a literal `/a/../b/` away before the Worker sees it; percent-encoded
    // slashes carry `..` through as a component of the decoded name.
    const m = await imageManifest(uniqueName("man"));
    for (const path of ["a%2F..%2Fb", "a/%2E%2E%2Fb", "a%2F..", "%2E%2E%2Fa"]) {
      const put = await putManifest(path, "v1", m.text);
      expect(put.status, path).toBe(400);
      expect(await errorCode(put), path).toBe("NAME_INVALID");
    }
  });
});

describe("unknown manifests", () => {
  it("GET and HEAD of an unknown tag or digest, or of a reference that is not a valid tag, are 404 MANIFEST_UNKNOWN", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);
    for (const ref of ["nope", await sha256("nope")]) {
      const get = await call(`/v2/${name}/manifests/${ref}`);
      expect(get.status, ref).toBe(404);
      expect(await errorCode(get), ref).toBe("MANIFEST_UNKNOWN");
      const head = await call(`/v2/${name}/manifests/${ref}`, { method: "HEAD" });
      expect(head.status, ref).toBe(404);
    }
    // A reference that cannot be a tag names nothing stored either (a malformed digest is refused).
    for (const ref of [".INVALID_MANIFEST_NAME", "-leading-dash", "t".repeat(129)]) {
      const get = await call(`/v2/${name}/manifests/${ref}`);
      expect(get.status, ref).toBe(404);
      expect(await errorCode(get), ref).toBe("MANIFEST_UNKNOWN");
      expect((await call(`/v2/${name}/manifests/${ref}`, { method: "HEAD" })).status, ref).toBe(404);
    }
    const malformed = await call(`/v2/${name}/manifests/sha256:xyz`);
    expect(malformed.status).toBe(400);
    expect(await errorCode(malformed)).toBe("DIGEST_INVALID");
    const nowhere = await call(`/v2/${uniqueName("man")}/manifests/latest`);
    expect(nowhere.status).toBe(404);
    expect(["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]).toContain(await errorCode(nowhere));
  });
});

describe("manifests stored by the original serverless-registry", () => {
  it("serves a stored schema 1 manifest by tag and digest with the right digest", async () => {
    const name = uniqueName("legacy");
    const schema1 = JSON.stringify(
      {
        schemaVersion: 1,
        name,
        tag: "old",
        architecture: "amd64",
        fsLayers: [{ blobSum: `sha256:${"a".repeat(64)}` }],
        history: [{ v1Compatibility: "{}" }],
        signatures: [{ header: { alg: "ES256" }, signature: "sig", protected: "prot" }],
      },
      null,
      3,
    );
    const bytes = new TextEncoder().encode(schema1);
    const digest = await sha256(bytes);
    const contentType = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    const options = {
      httpMetadata: { contentType },
      customMetadata: { hasSubject: "false" },
      sha256: hexOf(digest),
    };
    await env.REGISTRY.put(`${name}/manifests/old`, bytes, options);
    await env.REGISTRY.put(`${name}/manifests/${digest}`, bytes, options);

    for (const ref of ["old", digest]) {
      const get = await call(`/v2/${name}/manifests/${ref}`);
      expect(get.status, ref).toBe(200);
      expect(get.headers.get("Content-Type")).toBe(contentType);
      expect(get.headers.get("Docker-Content-Digest")).toBe(digest);
      expect(get.headers.get("Content-Length")).toBe(String(bytes.byteLength));
      expect(await bodyBytes(get)).toEqual(bytes);
      const head = await call(`/v2/${name}/manifests/${ref}`, { method: "HEAD" });
      expect(head.status, ref).toBe(200);
      expect(head.headers.get("Content-Type")).toBe(contentType);
      expect(head.headers.get("Docker-Content-Digest")).toBe(digest);
      expect(head.headers.get("Content-Length")).toBe(String(bytes.byteLength));
    }
    const tags = await call(`/v2/${name}/tags/list`);
    expect(await tags.json()).toEqual({ name, tags: ["old"] });
  });

  it("serves an OCI manifest stored by the original (no digest metadata, checksum only)", async () => {
    const name = uniqueName("legacy");
    const m = await imageManifest(name);
    const options = { httpMetadata: { contentType: OCI_MANIFEST }, customMetadata: { hasSubject: "false" }, sha256: hexOf(m.digest) };
    await env.REGISTRY.put(`${name}/manifests/v1`, m.text, options);
    await env.REGISTRY.put(`${name}/manifests/${m.digest}`, m.text, options);
    const head = await call(`/v2/${name}/manifests/v1`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Docker-Content-Digest")).toBe(m.digest);
    // And deleting it by digest removes the tag too.
    expect((await call(`/v2/${name}/manifests/${m.digest}`, { method: "DELETE" })).status).toBe(202);
    expect((await call(`/v2/${name}/manifests/v1`)).status).toBe(404);
  });
});

describe("deleting manifests", () => {
  it("DELETE by tag removes only that tag", async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    expect((await putManifest(name, "v1", m.text)).status).toBe(201);
    expect((await putManifest(name, "v2", m.text)).status).toBe(201);
    const del = await call(`/v2/${name}/manifests/v1`, { method: "DELETE" });
    expect(del.status).toBe(202);
    const gone = await call(`/v2/${name}/manifests/v1`);
    expect(gone.status).toBe(404);
    expect(await errorCode(gone)).toBe("MANIFEST_UNKNOWN");
    expect((await call(`/v2/${name}/manifests/v2`)).status).toBe(200);
    expect((await call(`/v2/${name}/manifests/${m.digest}`)).status).toBe(200);
    expect(await (await call(`/v2/${name}/tags/list`)).json()).toEqual({ name, tags: ["v2"] });
  });

  it("DELETE by digest removes the manifest and all 150 tags pointing at it in one call", { timeout: 60_000 }, async () => {
    const name = uniqueName("man");
    const m = await imageManifest(name);
    const keep = await imageManifest(name, 2);
    expect((await putManifest(name, "keep", keep.text)).status).toBe(201);
    const tags = Array.from({ length: 150 }, (_, i) => `t${String(i).padStart(3, "0")}`);
    for (const tag of tags) expect((await putManifest(name, tag, m.text)).status).toBe(201);

    const del = await call(`/v2/${name}/manifests/${m.digest}`, { method: "DELETE" });
    expect(del.status).toBe(202);

    const byDigest = await call(`/v2/${name}/manifests/${m.digest}`);
    expect(byDigest.status).toBe(404);
    expect(await errorCode(byDigest)).toBe("MANIFEST_UNKNOWN");
    for (const tag of tags) expect((await call(`/v2/${name}/manifests/${tag}`, { method: "HEAD" })).status, tag).toBe(404);
    expect(await (await call(`/v2/${name}/tags/list`)).json()).toEqual({ name, tags: ["keep"] });
    expect((await call(`/v2/${name}/manifests/keep`)).status).toBe(200);
  });

  it("DELETE of an unknown manifest is 404 MANIFEST_UNKNOWN", async () => {
    const name = uniqueName("man");
    for (const ref of ["nope", await sha256("nope"), ".INVALID_MANIFEST_NAME"]) {
      const res = await call(`/v2/${name}/manifests/${ref}`, { method: "DELETE" });
      expect(res.status, ref).toBe(404);
      expect(await errorCode(res), ref).toBe("MANIFEST_UNKNOWN");
    }
  });
});
