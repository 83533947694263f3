/// <reference lib="dom" />
/**
 * The web UI in a real browser (Debian's chromium, driven by playwright-core) against `pnpm dev`:
 * skopeo pushes an image and a two-platform index, a signature and an SBOM are attached to the
 * image; the browser signs in (a bad token and a wrong password first), walks repositories →
 * repository → tag → image → referrer and the index's platforms, checks what each page shows
 * against what was pushed, deletes a tag and a manifest and collects the garbage, and signs out;
 * a read-only user sees no delete buttons and has a crafted delete refused; a registry that stops
 * answering is reported; with ANONYMOUS_PULL the same bucket is browsed without signing in.
 * Screenshots of every page go to the directory printed at the start (UI_SCREENSHOTS=<dir> to
 * choose it). Also checks that src/ui/assets.ts is what its sources build to.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Skopeo } from "./lib/clients.ts";
import { REPO_ROOT, startDevServer, type RunningDevServer } from "./lib/dev-server.ts";
import { RegistryClient } from "./lib/http.ts";
import { attachArtifact, buildUiFixtures, OCI_MANIFEST, skopeoCopy, type UiFixtures } from "./lib/ui-fixtures.ts";
import { cleanupAll, makeTempDir, removeTempDir, sleep } from "./lib/processes.ts";
import { targetKind } from "./lib/target.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const READER = { username: "reader", password: "pull-only-secret" };

describe("web UI build", () => {
  it("src/ui/assets.ts is what src/ui/client builds to", () => {
    const result = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "build-ui.mjs"), "--check"], { cwd: REPO_ROOT, encoding: "utf8" });
    expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
  });
});

describe.skipIf(targetKind() !== "dev")("web UI in a real browser", () => {
  let work: string | undefined;
  let server: RunningDevServer | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext;
  let page: Page;
  let fx: UiFixtures;
  let client: RegistryClient;
  let signature: string;
  let sbom: string;
  const shots = process.env.UI_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), "r2-registry-ui-screenshots-"));
  /** Content-Security-Policy violations and uncaught errors the pages reported. */
  const problems: string[] = [];
  const srv = () => server!;

  async function newPage(width = 1200, height = 900): Promise<Page> {
    context = await browser!.newContext({ ignoreHTTPSErrors: true, viewport: { width, height }, locale: "en-US" });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: srv().url });
    const p = await context.newPage();
    p.setDefaultTimeout(15_000);
    p.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    p.on("console", (message) => {
      if (message.type() === "error" && /Content Security Policy|Trusted Type/i.test(message.text())) problems.push(message.text());
    });
    return p;
  }

  async function shot(name: string): Promise<void> {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  }

  async function open(hash: string): Promise<void> {
    await page.goto(`${srv().url}/ui/${hash}`);
  }

  /** The cells' texts of a table's rows, once every row is filled in (no "…" left). */
  async function rowsOf(selector: string): Promise<string[][]> {
    await page.waitForFunction(
      (s) => {
        const rows = [...document.querySelectorAll(`${s} tbody tr`)];
        return rows.length > 0 && rows.every((tr) => !tr.textContent?.includes("…"));
      },
      selector,
    );
    return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((tr) => [...(tr as HTMLTableRowElement).cells].map((td) => td.textContent?.trim() ?? "")));
  }

  async function tagsOf(repo: string): Promise<string[]> {
    const res = await client.request("GET", `/v2/${repo}/tags/list`);
    return (JSON.parse(res.body.toString("utf8")) as { tags: string[] }).tags;
  }

  const short = (digest: string) => digest.slice(0, "sha256:".length + 12);
  const sizeOf = (blobs: { size: number }[]) => blobs.reduce((sum, b) => sum + b.size, 0);

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (or set CHROMIUM_PATH)`);
    mkdirSync(shots, { recursive: true });
    console.log(`web UI screenshots: ${shots}`);
    work = makeTempDir("e2e-ui");
    fx = buildUiFixtures(work);
    [server, browser] = await Promise.all([
      startDevServer({ stateDir: join(work, "state"), username: "admin", env: { READONLY_USERNAME: READER.username, READONLY_PASSWORD: READER.password } }),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] }),
    ]);
    client = new RegistryClient(srv().url, { username: srv().username, password: srv().password });
    const skopeo = new Skopeo(join(work, "skopeo"));
    await skopeoCopy(skopeo, srv(), fx.layoutDir, "app", "ui/app:v1");
    await skopeoCopy(skopeo, srv(), fx.layoutDir, "multi", "ui/multi:1.0");
    // Last-Modified counts seconds: v2 is pushed visibly later than v1.
    await sleep(1100);
    await skopeoCopy(skopeo, srv(), fx.layoutDir, "app", "ui/app:v2");
    const subject = { mediaType: OCI_MANIFEST, digest: fx.image.manifest.digest, size: fx.image.manifest.size };
    signature = await attachArtifact(client, "ui/app", subject, "application/vnd.dev.cosign.artifact.sig.v1+json", "signature", {
      "dev.cosignproject.cosign/signature": "MEUCIQ",
    });
    sbom = await attachArtifact(client, "ui/app", subject, "application/spdx+json", '{"spdxVersion":"SPDX-2.3"}', {
      "org.opencontainers.image.created": "2025-01-01T00:00:00Z",
    });
    page = await newPage();
  });

  afterAll(async () => {
    await cleanupAll([() => browser?.close(), () => server?.stop(), () => removeTempDir(work)]);
    console.log(`web UI screenshots: ${shots}`);
  });

  it("asks a signed-out visitor to sign in, refuses a wrong password, and signs in", async () => {
    await open("");
    await page.locator("form.sign-in").waitFor();
    expect(await page.locator("#sign-in-error").textContent()).toMatch(/Sign in to browse this registry/);
    await shot("1-sign-in");
    // A token is sent as Bearer: a bad one is refused.
    await page.check("input[name=method][value=token]");
    await page.fill("#token", "not-a-token");
    await page.click("form.sign-in button[type=submit]");
    await page.locator("#sign-in-error", { hasText: "refused these credentials" }).waitFor();
    await page.check("input[name=method][value=password]");
    await page.fill("#username", srv().username);
    await page.fill("#password", "not-the-password");
    await page.click("form.sign-in button[type=submit]");
    await page.locator("#sign-in-error", { hasText: "refused these credentials" }).waitFor();
    await page.fill("#password", srv().password);
    await page.click("form.sign-in button[type=submit]");
    await page.locator("h1", { hasText: "Repositories" }).waitFor();
    expect(await page.locator("#who").textContent()).toContain(`Signed in as ${srv().username}`);
    // Kept in the tab's session storage, never in a cookie.
    const stored = await page.evaluate(() => Object.keys(sessionStorage));
    expect(stored).toEqual(["r2-registry-ui.login"]);
    expect(await context.cookies()).toEqual([]);
  });

  it("lists the repositories with their tag counts, filters them, and works with the keyboard", async () => {
    expect(await rowsOf("#repositories")).toEqual([
      ["ui/app", "2"],
      ["ui/multi", "1"],
    ]);
    await shot("2-repositories");
    await page.keyboard.press("/");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("filter");
    await page.keyboard.type("mul");
    await page.waitForFunction(() => document.querySelectorAll("#repositories tbody tr").length === 1);
    expect(await rowsOf("#repositories")).toEqual([["ui/multi", "1"]]);
    expect(page.url()).toContain("#/?q=mul");
    await page.fill("#filter", "");
    await page.waitForFunction(() => document.querySelectorAll("#repositories tbody tr").length === 2);
    // Tab from the filter box to the first repository, Enter opens it.
    await page.focus("#filter");
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("ui/app");
    await page.keyboard.press("Enter");
    await page.locator("h1", { hasText: "ui/app" }).waitFor();
  });

  it("shows a repository's tags with digest, type, size and push time, by name or newest first", async () => {
    const digest = fx.image.manifest.digest;
    const size = sizeOf([fx.image.config, ...fx.image.layers]);
    const rows = await rowsOf("#tags");
    expect(rows.map((r) => r[0])).toEqual(["v1", "v2"]);
    for (const row of rows) {
      expect(row[1]).toContain(short(digest));
      expect(row[2]).toContain("image");
      expect(row[2]).toContain(OCI_MANIFEST);
      expect(row[5]).toMatch(/ago|now/);
    }
    const exact = await page.$$eval("#tags tbody tr td:nth-child(4) span[title]", (spans) => spans.map((s) => s.getAttribute("title")));
    expect(exact).toEqual([`${size.toLocaleString("en-US")} bytes`, `${size.toLocaleString("en-US")} bytes`]);
    expect(await page.locator("#tags button", { hasText: "Delete" }).count()).toBe(2);
    await page.locator("#gc-title").waitFor();
    await shot("3-repository");
    await page.selectOption("#sort", "newest");
    await page.waitForFunction(() => location.hash.includes("sort=newest"));
    expect((await rowsOf("#tags")).map((r) => r[0])).toEqual(["v2", "v1"]);
    // The index's repository: its platforms.
    await open("#/r/ui/multi");
    const multi = await rowsOf("#tags");
    expect(multi).toHaveLength(1);
    expect(multi[0]![2]).toContain("index");
    expect(multi[0]![4]).toBe("linux/amd64, linux/arm64/v8");
    const indexSize = sizeOf([...new Map(fx.index.images.flatMap((i) => [i.config, ...i.layers]).map((b) => [b.digest, b])).values()]);
    expect(await page.getAttribute("#tags tbody tr td:nth-child(4) span[title]", "title")).toBe(`${indexSize.toLocaleString("en-US")} bytes`);
  });

  it("shows an image: config, layers, history, referrers and the commands that pull it", async () => {
    await open("#/r/ui/app");
    await page.click("#tags a >> text=v1");
    await page.locator("h1", { hasText: "ui/app:v1" }).waitFor();
    await page.locator("#layers").waitFor();
    await page.locator("#referrers-title", { hasText: "Referrers (2)" }).waitFor();
    const text = (await page.locator("main").textContent()) ?? "";
    expect(text).toContain(fx.image.manifest.digest);
    expect(text).toContain("linux/amd64");
    expect(text).toContain('["/usr/local/bin/app","--serve"]');
    expect(text).toContain("org.example.team = registry");
    const layers = await rowsOf("#layers table");
    expect(layers.map((r) => r[2])).toEqual(fx.image.layers.map((l) => expect.stringContaining(short(l.digest))));
    expect(layers.map((r) => r[4])).toEqual(["COPY motd /etc/motd", "COPY blob.bin /data/", "COPY app /usr/local/bin/"]);
    expect(await rowsOf("#history table")).toHaveLength(3);
    const referrers = await rowsOf("#referrers table");
    expect(referrers.map((r) => r[0]).sort()).toEqual(["application/spdx+json", "application/vnd.dev.cosign.artifact.sig.v1+json"]);
    expect(referrers.find((r) => r[0] === "application/vnd.dev.cosign.artifact.sig.v1+json")![3]).toContain("dev.cosignproject.cosign/signature = MEUCIQ");
    const pulls = await page.$$eval(".command code", (codes) => codes.map((c) => c.textContent));
    expect(pulls).toEqual([`docker pull ${srv().host}/ui/app:v1`, `docker pull ${srv().host}/ui/app@${fx.image.manifest.digest}`]);
    await page.click(".command button");
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`docker pull ${srv().host}/ui/app:v1`);
    await shot("4-image");

    // A referrer opens: the signature, its type, its blob, and the way back to its subject.
    await page.click(`#referrers a[href$="${signature}"] >> nth=0`);
    await page.locator("h1", { hasText: `ui/app@${short(signature)}` }).waitFor();
    await page.locator("#blobs-title", { hasText: "Blobs (1)" }).waitFor();
    const artifact = (await page.locator("main").textContent()) ?? "";
    expect(artifact).toContain("artifact");
    expect(artifact).toContain("application/vnd.dev.cosign.artifact.sig.v1+json");
    expect(artifact).toContain("application/vnd.oci.empty.v1+json");
    expect(artifact).toContain(short(fx.image.manifest.digest));
    await shot("5-referrer");
    await page.click("#subject");
    await page.locator("h1", { hasText: `ui/app@${short(fx.image.manifest.digest)}` }).waitFor();
    expect(sbom).toMatch(/^sha256:/);
  });

  it("shows an index's platforms, each openable", async () => {
    await open("#/r/ui/multi:1.0");
    const platforms = await rowsOf("#platforms table");
    expect(platforms.map((r) => r[0])).toEqual(["linux/amd64", "linux/arm64/v8"]);
    expect(platforms.map((r) => r[1])).toEqual(fx.index.images.map((i) => expect.stringContaining(short(i.manifest.digest))));
    await shot("6-index");
    await page.click("#platforms a >> text=linux/arm64/v8");
    await page.locator("h1", { hasText: `ui/multi@${short(fx.index.images[1]!.manifest.digest)}` }).waitFor();
    await page.locator("#config").waitFor();
    expect(await page.locator("main").textContent()).toContain("linux/arm64/v8");
  });

  it("deletes a tag and a manifest after saying what goes, then collects the garbage", async () => {
    await open("#/r/ui/app");
    await rowsOf("#tags");
    await page.click('#tags tr[data-tag="v2"] button.danger');
    const dialog = page.locator("dialog[open]");
    expect(await dialog.textContent()).toContain("ui/app:v2");
    await page.keyboard.press("Escape"); // Cancel: nothing happens.
    await dialog.waitFor({ state: "detached" });
    expect(await tagsOf("ui/app")).toEqual(["v1", "v2"]);
    await page.click('#tags tr[data-tag="v2"] button.danger');
    await shot("7-delete-tag");
    await page.click("dialog[open] button.danger");
    await page.locator("#status", { hasText: "Deleted tag ui/app:v2." }).waitFor();
    expect(await page.locator('#tags tr[data-tag="v2"]').count()).toBe(0);
    expect(await tagsOf("ui/app")).toEqual(["v1"]);

    // The index, by digest: the confirmation names its tag and its platforms.
    await open("#/r/ui/multi:1.0");
    await page.click("#delete-manifest");
    const confirm = (await page.locator("dialog[open]").textContent()) ?? "";
    expect(confirm).toContain(fx.index.index.digest);
    expect(confirm).toContain("its tag 1.0");
    expect(confirm).toContain("Its 2 platform manifests stay");
    await page.click("dialog[open] button.danger");
    await page.locator("h1", { hasText: "ui/multi" }).waitFor();
    await page.locator("#status", { hasText: `Deleted manifest ${fx.index.index.digest} and its tag 1.0.` }).waitFor();
    expect(await tagsOf("ui/multi")).toEqual([]);

    // What is left unreachable: a dry run lists it, a run frees it.
    await page.selectOption("#gc-mode", "untagged");
    await page.fill("#gc-grace", "0");
    await page.click("#gc-dry-run");
    const dry = (await page.locator(".gc-summary").textContent()) ?? "";
    expect(dry).toMatch(/^Dry run \(untagged\): would delete 2 manifests and \d+ blobs/);
    await page.click("#gc-run");
    await page.click("dialog[open] button.danger");
    await page.locator(".gc-summary", { hasText: "Collected (untagged)" }).waitFor();
    await shot("8-garbage-collection");
    expect((await client.request("GET", `/v2/ui/multi/manifests/${fx.index.images[0]!.manifest.digest}`)).status).toBe(404);
  });

  it("signs out: the credentials leave the tab", async () => {
    await page.click("#sign-out");
    await page.locator("form.sign-in").waitFor();
    expect(await page.evaluate(() => Object.keys(sessionStorage))).toEqual([]);
    expect(await page.locator("#status").textContent()).toContain("Signed out");
  });

  it("shows a read-only user no delete buttons, and the registry refuses a crafted delete", async () => {
    await page.fill("#username", READER.username);
    await page.fill("#password", READER.password);
    await page.click("form.sign-in button[type=submit]");
    await page.locator("h1", { hasText: "Repositories" }).waitFor();
    await open("#/r/ui/app");
    await rowsOf("#tags");
    await page.locator("#read-only").waitFor();
    expect(await page.locator("#read-only").textContent()).toContain("reader may not push");
    expect(await page.locator("main button.danger").count()).toBe(0);
    expect(await page.locator("#gc-title").count()).toBe(0);
    await shot("9-read-only");
    await open("#/r/ui/app:v1");
    await page.locator("#read-only").waitFor();
    expect(await page.locator("#delete-tag, #delete-manifest").count()).toBe(0);
    // The page's own fetch, with the reader's credentials and the page's Origin: refused.
    const crafted = await page.evaluate(async () => {
      const login = JSON.parse(sessionStorage.getItem("r2-registry-ui.login")!) as { authorization: string };
      const res = await fetch("/v2/ui/app/manifests/v1", { method: "DELETE", headers: { Authorization: login.authorization }, credentials: "omit" });
      return { status: res.status, body: await res.text() };
    });
    expect(crafted.status).toBe(403);
    expect(crafted.body).toContain("reader may not push");
    expect(await tagsOf("ui/app")).toEqual(["v1"]);
    await page.click("#sign-out");
  });

  it("lays the pages out for a phone", async () => {
    await context.close();
    page = await newPage(390, 844);
    await page.goto(`${srv().url}/ui/`);
    await page.fill("#username", srv().username);
    await page.fill("#password", srv().password);
    await page.click("form.sign-in button[type=submit]");
    await page.locator("h1", { hasText: "Repositories" }).waitFor();
    await open("#/r/ui/app");
    await rowsOf("#tags");
    await shot("10-phone-repository");
    await open("#/r/ui/app:v1");
    await page.locator("#referrers-title", { hasText: "Referrers (2)" }).waitFor();
    await page.locator("#layers").waitFor();
    await shot("11-phone-image");
    // Nothing wider than the screen: tables became cards.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await page.$eval("#layers thead", (el) => getComputedStyle(el).position)).toBe("absolute");
  });

  it("says so when the registry does not answer", async () => {
    await context.close();
    page = await newPage();
    await open("");
    await page.locator("form.sign-in").waitFor();
    await server!.process.stop();
    await page.evaluate(() => {
      location.hash = "#/r/ui/app";
    });
    await page.locator("h1", { hasText: "Registry unreachable" }).waitFor();
    expect(await page.locator("main .error").textContent()).toContain("The registry did not answer");
    await shot("12-unreachable");
  });

  it("with ANONYMOUS_PULL, browses the same bucket without signing in, and offers no deletes", async () => {
    // The same bucket, served again with public pulls.
    server = await startDevServer({ stateDir: srv().stateDir, env: { ANONYMOUS_PULL: "true" } });
    await context.close();
    page = await newPage();
    await open("");
    expect(await rowsOf("#repositories")).toEqual([
      ["ui/app", "1"],
      ["ui/multi", "0"],
    ]);
    expect(await page.locator("#sign-in").textContent()).toBe("Sign in");
    await shot("13-anonymous");
    await open("#/r/ui/app:v1");
    await page.locator("#referrers-title", { hasText: "Referrers (2)" }).waitFor();
    await page.locator("#read-only").waitFor();
    expect(await page.locator("#read-only").textContent()).toContain("Sign in with push rights");
    expect(await page.locator("main button.danger").count()).toBe(0);
    const crafted = await page.evaluate(async () => (await fetch("/v2/ui/app/manifests/v1", { method: "DELETE", credentials: "omit" })).status);
    expect(crafted).toBe(401);
    expect(problems).toEqual([]);
  });
});
