import { describe, expect, it } from "vitest";
import { call, imageManifest, putManifest } from "./helpers";

describe("smoke", () => {
  it("pushes and pulls an image", async () => {
    expect((await call("/v2/")).status).toBe(200);
    const m = await imageManifest("smoke/app");
    const put = await putManifest("smoke/app", "v1", m.text);
    expect(put.status, await put.clone().text()).toBe(201);
    expect(put.headers.get("Docker-Content-Digest")).toBe(m.digest);
    const get = await call("/v2/smoke/app/manifests/v1");
    expect(get.status).toBe(200);
    expect(await get.text()).toBe(m.text);
    const tags = await call("/v2/smoke/app/tags/list");
    expect(await tags.json()).toEqual({ name: "smoke/app", tags: ["v1"] });
    const cat = await call("/v2/_catalog");
    expect(await cat.json()).toEqual({ repositories: ["smoke/app"] });
  });
});
