import { describe, expect, it } from "vitest";
import { call, errorCode, imageManifest, putManifest, uniqueName } from "./helpers";

interface TagList {
  name: string;
  tags: string[];
}

/** A repository holding one manifest under each of the given tags (pushed in the order given). */
async function repoWithTags(tags: string[]): Promise<{ name: string; digest: string }> {
  const name = uniqueName("tags");
  const m = await imageManifest(name);
  for (const tag of tags) expect((await putManifest(name, tag, m.text)).status).toBe(201);
  return { name, digest: m.digest };
}

describe("GET /v2/<name>/tags/list", () => {
  it("lists tags in lexical order", async () => {
    const tags = ["v2", "latest", "v10", "1.0", "alpha", "Beta", "v1.0.0-rc_1"];
    const { name } = await repoWithTags(tags);
    const res = await call(`/v2/${name}/tags/list`);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    expect(res.headers.get("Link")).toBeNull();
    const body = (await res.json()) as TagList;
    expect(body).toEqual({ name, tags: [...tags].sort() });
  });

  it("never lists digests as tags", async () => {
    const name = uniqueName("tags");
    const tagged = await imageManifest(name, 1);
    const untagged = await imageManifest(name, 2);
    expect((await putManifest(name, "v1", tagged.text)).status).toBe(201);
    expect((await putManifest(name, untagged.digest, untagged.text)).status).toBe(201);
    const body = (await (await call(`/v2/${name}/tags/list`)).json()) as TagList;
    expect(body.tags).toEqual(["v1"]);
  });

  it("a repository with only untagged manifests lists no tags", async () => {
    const name = uniqueName("tags");
    const m = await imageManifest(name);
    expect((await putManifest(name, m.digest, m.text)).status).toBe(201);
    const res = await call(`/v2/${name}/tags/list`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as TagList).tags).toEqual([]);
  });

  it("paginates with n and last, with a Link header only while more remain", async () => {
    const { name } = await repoWithTags(["d", "b", "e", "a", "c"]);

    const first = await call(`/v2/${name}/tags/list?n=2`);
    expect(first.status).toBe(200);
    expect(((await first.json()) as TagList).tags).toEqual(["a", "b"]);
    expect(first.headers.get("Link")).toBe(`</v2/${name}/tags/list?n=2&last=b>; rel="next"`);

    const second = await call(`/v2/${name}/tags/list?n=2&last=b`);
    expect(((await second.json()) as TagList).tags).toEqual(["c", "d"]);
    expect(second.headers.get("Link")).toBe(`</v2/${name}/tags/list?n=2&last=d>; rel="next"`);

    const third = await call(`/v2/${name}/tags/list?n=2&last=d`);
    expect(((await third.json()) as TagList).tags).toEqual(["e"]);
    expect(third.headers.get("Link")).toBeNull();
  });

  it("gives no Link when the page holds exactly the remaining tags", async () => {
    const { name } = await repoWithTags(["a", "b", "c", "d"]);
    const page = await call(`/v2/${name}/tags/list?n=2&last=b`);
    expect(((await page.json()) as TagList).tags).toEqual(["c", "d"]);
    expect(page.headers.get("Link")).toBeNull();
    const all = await call(`/v2/${name}/tags/list?n=4`);
    expect(((await all.json()) as TagList).tags).toEqual(["a", "b", "c", "d"]);
    expect(all.headers.get("Link")).toBeNull();
  });

  it("following the Link header walks every tag exactly once", async () => {
    const tags = Array.from({ length: 23 }, (_, i) => `tag-${String(i).padStart(2, "0")}`);
    const { name } = await repoWithTags([...tags].reverse());
    const seen: string[] = [];
    let path: string | undefined = `/v2/${name}/tags/list?n=5`;
    let pages = 0;
    while (path) {
      const res = await call(path);
      expect(res.status).toBe(200);
      seen.push(...((await res.json()) as TagList).tags);
      path = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("Link") ?? "")?.[1];
      pages += 1;
      expect(pages).toBeLessThan(10);
    }
    expect(seen).toEqual(tags);
    expect(pages).toBe(5);
  });

  it("last between tags starts after it", async () => {
    const { name } = await repoWithTags(["a", "c", "e"]);
    const res = await call(`/v2/${name}/tags/list?last=b`);
    expect(((await res.json()) as TagList).tags).toEqual(["c", "e"]);
  });

  it("last after every tag gives an empty list and no Link", async () => {
    const { name } = await repoWithTags(["a", "b"]);
    const res = await call(`/v2/${name}/tags/list?n=1&last=zzz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name, tags: [] });
    expect(res.headers.get("Link")).toBeNull();
  });

  it("n=0 gives an empty list and no Link", async () => {
    const { name } = await repoWithTags(["a", "b"]);
    const res = await call(`/v2/${name}/tags/list?n=0`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name, tags: [] });
    expect(res.headers.get("Link")).toBeNull();
  });

  it("an unknown repository is 404 NAME_UNKNOWN", async () => {
    const res = await call(`/v2/${uniqueName("tags")}/tags/list`);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("NAME_UNKNOWN");
  });

  it("a repository with blobs but no manifests is unknown to tags/list", async () => {
    const name = uniqueName("tags");
    await imageManifest(name); // pushes blobs only
    const res = await call(`/v2/${name}/tags/list`);
    expect(res.status).toBe(404);
    expect(await errorCode(res)).toBe("NAME_UNKNOWN");
  });

  it("an invalid n is 400", async () => {
    const { name } = await repoWithTags(["a"]);
    for (const n of ["abc", "-1", "1.5", "1e3"]) {
      const res = await call(`/v2/${name}/tags/list?n=${n}`);
      expect(res.status, n).toBe(400);
      expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    }
  });

  it("an invalid repository name is 400 NAME_INVALID", async () => {
    const res = await call("/v2/Not-Lower/tags/list");
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe("NAME_INVALID");
  });

  it("lists the tags of a nested repository, not its parent's or children's", async () => {
    const parent = uniqueName("tags");
    const child = `${parent}/child`;
    const p = await imageManifest(parent, 1);
    const c = await imageManifest(child, 2);
    expect((await putManifest(parent, "parent-tag", p.text)).status).toBe(201);
    expect((await putManifest(child, "child-tag", c.text)).status).toBe(201);
    expect(((await (await call(`/v2/${parent}/tags/list`)).json()) as TagList).tags).toEqual(["parent-tag"]);
    expect(((await (await call(`/v2/${child}/tags/list`)).json()) as TagList).tags).toEqual(["child-tag"]);
  });
});
