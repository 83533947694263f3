/**
 * OCI Distribution Spec v1.1, conformance workflow category 3, "Content discovery": listing tags
 * (`n`, `last`, `Link`) and the referrers API (filter, `OCI-Filters-Applied`, empty index), in the
 * official suite's order, written from the spec.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { artifactManifest, call, imageManifest, OCI_INDEX, OCI_MANIFEST, pushBlob, putManifest, sha256, uniqueName } from "./helpers";

interface TagList {
  name: string;
  tags: string[];
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

interface Index {
  schemaVersion: number;
  mediaType: string;
  manifests: Descriptor[];
}

const TYPE_A = "application/vnd.example.type-a";
const TYPE_B = "application/vnd.example.type-b";
const TYPE_INDEX = "application/vnd.example.type-index";
const ANNOTATION = "org.opencontainers.conformance.test";

const name = uniqueName("conformance/discovery");
const TAGS = ["test0", "test1", "test2", "test3"];
let subject: Descriptor;
/** The referrers of `subject` pushed in setup, by digest. */
const referrers = new Map<string, Descriptor>();
let dangling: { subject: string; referrer: string };

/** Pushes a manifest by digest and records what the referrers API should list for it. */
async function pushReferrer(text: string, mediaType: string, artifactType: string, annotation: string): Promise<void> {
  const digest = await sha256(text);
  const res = await putManifest(name, digest, text, mediaType);
  expect(res.status).toBe(201);
  expect(res.headers.get("OCI-Subject")).toBe(subject.digest);
  const size = new TextEncoder().encode(text).byteLength;
  referrers.set(digest, { mediaType, digest, size, artifactType, annotations: { [ANNOTATION]: annotation } });
}

beforeAll(async () => {
  const image = await imageManifest(name, 41);
  for (const tag of TAGS) expect((await putManifest(name, tag, image.text)).status).toBe(201);
  subject = { mediaType: OCI_MANIFEST, digest: image.digest, size: new TextEncoder().encode(image.text).byteLength };

  // Five referrers of `subject`: per type, one with the type in its config's media type and one in
  // artifactType with the empty config; and one index.
  for (const [type, seed] of [[TYPE_A, "a"], [TYPE_B, "b"]] as const) {
    const config = `{"referrer":"${seed}"}`;
    const configDigest = await pushBlob(name, config);
    const inConfig = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: type, digest: configDigest, size: config.length },
      layers: [],
      subject,
      annotations: { [ANNOTATION]: `config ${seed}` },
    });
    await pushReferrer(inConfig, OCI_MANIFEST, type, `config ${seed}`);
    await pushReferrer(artifactManifest(subject, type, [], { [ANNOTATION]: `layer ${seed}` }), OCI_MANIFEST, type, `layer ${seed}`);
  }
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    artifactType: TYPE_INDEX,
    manifests: [subject],
    subject,
    annotations: { [ANNOTATION]: "index" },
  });
  await pushReferrer(index, OCI_INDEX, TYPE_INDEX, "index");

  // A referrer whose subject is not in the registry.
  const missing = await sha256("a subject that was never pushed");
  const orphan = artifactManifest({ digest: missing, size: 99 }, TYPE_A);
  expect((await putManifest(name, await sha256(orphan), orphan)).status).toBe(201);
  dangling = { subject: missing, referrer: await sha256(orphan) };
});

async function tagList(query = ""): Promise<{ res: Response; body: TagList }> {
  const res = await call(`/v2/${name}/tags/list${query}`);
  expect(res.status).toBe(200);
  return { res, body: (await res.json()) as TagList };
}

/** The path a `Link: <path>; rel="next"` header points at. */
function nextPath(res: Response): string | undefined {
  const link = res.headers.get("Link");
  if (link === null) return undefined;
  expect(link).toMatch(/^<[^>]+>; rel="next"$/);
  return link.slice(1, link.indexOf(">"));
}

describe("Listing tags", () => {
  it("GET tags/list is 200 with the repository's name and its tags in lexical order", async () => {
    const { res, body } = await tagList();
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(body).toEqual({ name, tags: TAGS });
    expect(res.headers.get("Link")).toBeNull();
  });

  it("n limits the number of tags, and a Link header points at the next page", async () => {
    const { res, body } = await tagList("?n=2");
    expect(body.tags).toEqual(["test0", "test1"]);
    expect(nextPath(res)).toBe(`/v2/${name}/tags/list?n=2&last=test1`);
  });

  it("last starts the list after the given tag", async () => {
    const { body } = await tagList("?n=2&last=test1");
    expect(body.tags).toEqual(["test2", "test3"]);
    const after = await tagList("?last=test0");
    expect(after.body.tags).toEqual(["test1", "test2", "test3"]);
  });

  it("following Link headers walks every tag once, and the last page has none", async () => {
    const seen: string[] = [];
    let path: string | undefined = `/v2/${name}/tags/list?n=3`;
    while (path) {
      const res = await call(path);
      expect(res.status).toBe(200);
      seen.push(...((await res.json()) as TagList).tags);
      path = nextPath(res);
    }
    expect(seen).toEqual(TAGS);
  });
});

describe("Listing referrers", () => {
  async function listReferrers(digest: string, query = ""): Promise<{ res: Response; index: Index }> {
    const res = await call(`/v2/${name}/referrers/${digest}${query}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe(OCI_INDEX);
    const index = (await res.json()) as Index;
    expect(index.schemaVersion).toBe(2);
    expect(index.mediaType).toBe(OCI_INDEX);
    return { res, index };
  }

  it("referrers of a digest nothing refers to is 200 with an empty image index", async () => {
    const { res, index } = await listReferrers(await sha256("nothing refers to this"));
    expect(index.manifests).toEqual([]);
    expect(res.headers.get("OCI-Filters-Applied")).toBeNull();
  });

  it("referrers of a manifest lists every manifest and index whose subject it is, with artifactType and annotations", async () => {
    const { res, index } = await listReferrers(subject.digest);
    expect(res.headers.get("OCI-Filters-Applied")).toBeNull();
    expect(index.manifests).toHaveLength(5);
    for (const descriptor of index.manifests) expect(descriptor).toEqual(referrers.get(descriptor.digest));
  });

  it("an artifactType filter lists only that type, and OCI-Filters-Applied says it was applied", async () => {
    const { res, index } = await listReferrers(subject.digest, `?artifactType=${encodeURIComponent(TYPE_A)}`);
    expect(res.headers.get("OCI-Filters-Applied")).toBe("artifactType");
    expect(index.manifests).toHaveLength(2);
    for (const descriptor of index.manifests) {
      expect(descriptor.artifactType).toBe(TYPE_A);
      expect(descriptor).toEqual(referrers.get(descriptor.digest));
    }
  });

  it("referrers of a subject that is not in the registry lists the manifest that refers to it", async () => {
    const { index } = await listReferrers(dangling.subject);
    expect(index.manifests.map((m) => m.digest)).toEqual([dangling.referrer]);
  });

  it("a long list is paged with a Link header; the pages together hold every referrer once", async () => {
    const seen: string[] = [];
    let path: string | undefined = `/v2/${name}/referrers/${subject.digest}?n=2`;
    while (path) {
      const res = await call(path);
      expect(res.status).toBe(200);
      const page = (await res.json()) as Index;
      expect(page.manifests.length).toBeLessThanOrEqual(2);
      seen.push(...page.manifests.map((m) => m.digest));
      path = nextPath(res);
    }
    expect(seen.sort()).toEqual([...referrers.keys()].sort());
  });
});
