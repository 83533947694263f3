/**
 * The web UI as the Worker serves it (`/ui/`), and what the page relies on from `/v2/`: the
 * push-rights probe, same-origin writes, and `Last-Modified` on manifests.
 */
import { describe, expect, it } from "vitest";
import { UI_FILES } from "../../src/ui/assets";
import { UI_CONTENT_SECURITY_POLICY } from "../../src/ui/serve";
import { call, imageManifest, ORIGIN, putManifest, RO, RW, uniqueName, type ErrorBody } from "./helpers";

/** What a page of the registry's own origin sends with a fetch that changes something. */
const SAME_ORIGIN = { Origin: ORIGIN, "Sec-Fetch-Site": "same-origin" };

/** The CSP's directives by name. */
function directives(policy: string | null): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const part of (policy ?? "").split(";")) {
    const [name, ...values] = part.trim().split(/\s+/);
    if (name) found.set(name.toLowerCase(), values);
  }
  return found;
}

describe("the web UI's files", () => {
  it("GET / is still the plain health check, without credentials", async () => {
    const res = await call("/", { auth: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("text/plain; charset=utf-8");
    expect(await res.text()).toBe("r2-registry\n");
  });

  it("serves the page at /ui/ without credentials, and /ui redirects there", async () => {
    const page = await call("/ui/", { auth: null });
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    const html = await page.text();
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).toContain('<script type="module" src="main.js"></script>');
    const redirect = await call("/ui?x=1", { auth: null, redirect: "manual" });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get("Location")).toBe("/ui/?x=1");
    // The page is served even with a wrong password: it signs in itself.
    expect((await call("/ui/", { auth: "Basic bm9ib2R5Om5vcGU=" })).status).toBe(200);
  });

  it("serves each file the page loads with its content type, the CSP and nosniff", async () => {
    const html = await (await call("/ui/", { auth: null })).text();
    const loaded = [...html.matchAll(/(?:src|href)="([^"#]+)"/g)].map((m) => m[1]!);
    expect(loaded.sort()).toEqual(["icon.svg", "main.js", "style.css"]);
    const types: Record<string, string> = {
      "main.js": "text/javascript; charset=utf-8",
      "api.js": "text/javascript; charset=utf-8",
      "style.css": "text/css; charset=utf-8",
      "icon.svg": "image/svg+xml; charset=utf-8",
    };
    for (const [file, type] of Object.entries(types)) {
      const res = await call(`/ui/${file}`, { auth: null });
      expect(res.status, file).toBe(200);
      expect(res.headers.get("Content-Type"), file).toBe(type);
      expect(res.headers.get("X-Content-Type-Options"), file).toBe("nosniff");
      expect(res.headers.get("Content-Security-Policy"), file).toBe(UI_CONTENT_SECURITY_POLICY);
      expect(await res.text(), file).toBe(UI_FILES[file]!.body);
    }
  });

  it("every module a script imports is served", async () => {
    for (const [file, { body }] of Object.entries(UI_FILES)) {
      if (!file.endsWith(".js")) continue;
      for (const [, imported] of body.matchAll(/from\s+"\.\/([^"]+)"/g)) {
        const res = await call(`/ui/${imported}`, { auth: null });
        expect(res.status, `${file} imports ${imported}`).toBe(200);
        expect(res.headers.get("Content-Type")).toBe("text/javascript; charset=utf-8");
      }
    }
  });

  it("has a strict Content-Security-Policy: this origin only, no inline code, no framing, Trusted Types", async () => {
    const res = await call("/ui/", { auth: null });
    const csp = directives(res.headers.get("Content-Security-Policy"));
    expect(csp.get("default-src")).toEqual(["'self'"]);
    expect(csp.get("script-src")).toEqual(["'self'"]);
    expect(csp.get("style-src")).toEqual(["'self'"]);
    expect(csp.get("connect-src")).toEqual(["'self'"]);
    expect(csp.get("object-src")).toEqual(["'none'"]);
    expect(csp.get("base-uri")).toEqual(["'none'"]);
    expect(csp.get("frame-ancestors")).toEqual(["'none'"]);
    expect(csp.get("form-action")).toEqual(["'none'"]);
    expect(csp.get("require-trusted-types-for")).toEqual(["'script'"]);
    for (const values of csp.values()) {
      for (const value of values) expect(value).not.toMatch(/unsafe|^\*$|^data:|^https?:$|nonce|sha\d+-/);
    }
    expect(res.headers.get("X-Frame-Options")).toBe("DENY");
    expect(res.headers.get("Referrer-Policy")).toBe("no-referrer");
  });

  it("has no inline script or style and no inline event handler in its HTML", async () => {
    const html = await (await call("/ui/", { auth: null })).text();
    for (const [, attributes, content] of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
      expect(attributes).toMatch(/\bsrc="/);
      expect(content!.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/javascript:/i);
  });

  it("ships well under 100 KB of JavaScript, and builds no markup from strings", () => {
    const scripts = Object.entries(UI_FILES).filter(([file]) => file.endsWith(".js"));
    const total = scripts.reduce((sum, [, { body }]) => sum + new TextEncoder().encode(body).byteLength, 0);
    expect(scripts.length).toBeGreaterThan(0);
    expect(total).toBeLessThan(100_000);
    for (const [file, { body }] of scripts) {
      expect(body, file).not.toMatch(/\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
      expect(body, file).not.toMatch(/document\.cookie|localStorage/);
    }
  });

  it("answers 304 to a browser that has the file, 404 to an unknown one, 405 to other methods", async () => {
    const first = await call("/ui/main.js", { auth: null });
    const etag = first.headers.get("ETag");
    expect(etag).toMatch(/^"[0-9a-f]+"$/);
    expect(first.headers.get("Cache-Control")).toBe("no-cache");
    const again = await call("/ui/main.js", { auth: null, headers: { "If-None-Match": etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    const head = await call("/ui/", { auth: null, method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    const missing = await call("/ui/nope.js", { auth: null });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).errors[0]!.code).toBe("NOT_FOUND");
    for (const path of ["/ui/constructor", "/ui/__proto__", "/ui/../v2/"]) expect((await call(path, { auth: null })).status, path).not.toBe(200);
    const post = await call("/ui/", { auth: null, method: "POST", headers: SAME_ORIGIN });
    expect(post.status).toBe(405);
    expect(post.headers.get("Allow")).toBe("GET, HEAD");
  });
});

describe("what the page relies on from /v2/", () => {
  it("infers push rights without changing anything: DELETE of a reference that cannot be a tag", async () => {
    const name = uniqueName("ui");
    const image = await imageManifest(name);
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    const probe = (auth: string | null, env = {}) =>
      call(`/v2/${name}/manifests/-ui-probe`, { method: "DELETE", auth, env, headers: SAME_ORIGIN });
    expect((await probe(RW)).status).toBe(404); // read-write: may push
    expect((await probe(RO)).status).toBe(403);
    expect((await probe(null)).status).toBe(401);
    expect((await probe(null, { ANONYMOUS_PULL: "true" })).status).toBe(401);
    // Nothing was touched.
    expect((await call(`/v2/${name}/tags/list`)).status).toBe(200);
    expect(((await (await call(`/v2/${name}/tags/list`)).json()) as { tags: string[] }).tags).toEqual(["v1"]);
  });

  it("lets the page's own origin delete a tag, a manifest and collect; another origin may not", async () => {
    const name = uniqueName("ui");
    const image = await imageManifest(name);
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    expect((await putManifest(name, "v2", image.text)).status).toBe(201);
    const evil = await call(`/v2/${name}/manifests/v1`, { method: "DELETE", headers: { Origin: "https://evil.example", "Sec-Fetch-Site": "cross-site" } });
    expect(evil.status).toBe(403);
    expect((await call(`/v2/${name}/manifests/v1`, { method: "DELETE", headers: SAME_ORIGIN })).status).toBe(202);
    const dry = await call(`/v2/${name}/gc?mode=untagged&dry_run=true&grace=0`, { method: "POST", headers: SAME_ORIGIN });
    expect(dry.status).toBe(200);
    expect(((await dry.json()) as { success: boolean }).success).toBe(true);
    expect((await call(`/v2/${name}/manifests/${image.digest}`, { method: "DELETE", headers: SAME_ORIGIN })).status).toBe(202);
    const run = await call(`/v2/${name}/gc?mode=untagged&report=true&grace=0`, { method: "POST", headers: SAME_ORIGIN });
    expect(run.status).toBe(200);
    const report = (await run.json()) as { blobs: unknown[]; bytes: number };
    expect(report.blobs.length).toBe(2);
    expect(report.bytes).toBeGreaterThan(0);
    // A read-only user's crafted delete from the page is refused with the registry's message.
    const refused = await call(`/v2/${name}/manifests/v2`, { method: "DELETE", auth: RO, headers: SAME_ORIGIN });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as ErrorBody).errors[0]!.message).toContain("may not push");
  });

  it("manifest answers say when the manifest was pushed under that reference (Last-Modified)", async () => {
    const name = uniqueName("ui");
    const image = await imageManifest(name);
    const before = Math.floor(Date.now() / 1000) * 1000;
    expect((await putManifest(name, "v1", image.text)).status).toBe(201);
    for (const reference of ["v1", image.digest]) {
      for (const method of ["GET", "HEAD"]) {
        const res = await call(`/v2/${name}/manifests/${reference}`, { method });
        expect(res.status).toBe(200);
        const modified = Date.parse(res.headers.get("Last-Modified") ?? "");
        expect(modified, `${method} ${reference}`).toBeGreaterThanOrEqual(before - 1000);
        expect(modified).toBeLessThanOrEqual(Date.now() + 1000);
      }
    }
  });
});
