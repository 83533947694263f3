import { describe, expect, it } from "vitest";
import { call, RW, uniqueName } from "./helpers";

describe("answers browsers cannot misread", () => {
  it("every answer says X-Content-Type-Options: nosniff: the health check, /v2/, errors, manifests, blobs, /token", async () => {
    const name = uniqueName("nosniff");
    const answers = [
      await call("/", { auth: null }),
      await call("/v2/"),
      await call("/v2/", { auth: null }),
      await call(`/v2/${name}/manifests/latest`),
      await call(`/v2/${name}/blobs/sha256:${"0".repeat(64)}`),
      await call("/token?scope=repository:a:pull", { env: { ANONYMOUS_PULL: "true" } }),
      await call("/nowhere"),
    ];
    for (const answer of answers) expect(answer.headers.get("X-Content-Type-Options"), `${answer.status} ${answer.url}`).toBe("nosniff");
  });

  it("a registry URL embedded in another site's page (an <img>, sent with the saved login) is refused; registry clients and the site's own pages are not", async () => {
    const embedded = await call("/v2/_catalog", { auth: RW, headers: { "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image" } });
    expect(embedded.status).toBe(403);
    expect((await call("/v2/_catalog", { auth: RW })).status).toBe(200);
    expect((await call("/v2/_catalog", { auth: RW, headers: { "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors" } })).status).toBe(200);
    expect((await call("/v2/_catalog", { auth: RW, headers: { "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", Origin: "https://ui.example" } })).status).toBe(200);
  });
});
