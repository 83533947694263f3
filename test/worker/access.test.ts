import { beforeAll, describe, expect, it } from "vitest";
import { basic, call, imageManifest, putManifest, RO, RW, sha256 } from "./helpers";
import { claims, makeKey, setting, sign } from "./tokens";

type Outcome = "ok" | 401 | 403;

/** One request per route, on repository `team-a/app` (or `team-b/app` for the scoped token's denials). */
function routes(digest: string, blob: string) {
  return [
    { route: "GET /v2/", access: "login", path: "/v2/", method: "GET" },
    { route: "GET /v2/_catalog", access: "pull", path: "/v2/_catalog", method: "GET" },
    { route: "GET tags/list", access: "pull", path: "/v2/{repo}/tags/list", method: "GET" },
    { route: "GET manifest", access: "pull", path: "/v2/{repo}/manifests/v1", method: "GET" },
    { route: "HEAD manifest", access: "probe", path: "/v2/{repo}/manifests/v1", method: "HEAD" },
    { route: "GET referrers", access: "pull", path: `/v2/{repo}/referrers/${digest}`, method: "GET" },
    { route: "GET blob", access: "pull", path: `/v2/{repo}/blobs/${blob}`, method: "GET" },
    { route: "HEAD blob", access: "probe", path: `/v2/{repo}/blobs/${blob}`, method: "HEAD" },
    { route: "POST upload", access: "push", path: "/v2/{repo}/blobs/uploads/", method: "POST" },
    { route: "PUT manifest", access: "push", path: "/v2/{repo}/manifests/v1", method: "PUT" },
    { route: "DELETE manifest", access: "push", path: "/v2/{repo}/manifests/nope", method: "DELETE" },
    { route: "DELETE blob", access: "push", path: `/v2/{repo}/blobs/sha256:${"0".repeat(64)}`, method: "DELETE" },
    // A collection is a push-level operation; one that answers what it found lists the repository.
    { route: "POST gc", access: "push", path: "/v2/{repo}/gc?grace=3600", method: "POST" },
    { route: "POST gc dry run", access: "pull+push", path: "/v2/{repo}/gc?dry_run=true", method: "POST" },
    { route: "POST gc report", access: "pull+push", path: "/v2/{repo}/gc?grace=3600&report=true", method: "POST" },
  ] as const;
}

describe("access matrix: credential kind × route", () => {
  let manifest: { text: string; digest: string; blobs: string[] };
  let env: Record<string, string>;
  let creds: Record<string, { auth: string | null; env?: Record<string, string>; expect: (access: string, repo: string) => Outcome }>;

  beforeAll(async () => {
    const key = await makeKey("ES256");
    env = { JWT_REGISTRY_TOKENS_PUBLIC_KEY: setting(key) };
    manifest = await imageManifest("team-a/app");
    expect((await putManifest("team-a/app", "v1", manifest.text)).status).toBe(201);
    expect((await putManifest("team-b/app", "v1", (await imageManifest("team-b/app")).text)).status).toBe(201);
    const token = (caps: string[], extra = {}) => sign(key, claims(caps, extra)).then((t) => basic("ci", t));
    // HEAD ("probe") needs pull or push: pushing clients check what the registry already has.
    const loggedIn = (caps: string[]) => (access: string): Outcome =>
      access === "login" ||
      caps.includes(access) ||
      (access === "probe" && caps.length > 0) ||
      (access === "pull+push" && caps.includes("pull") && caps.includes("push"))
        ? "ok"
        : 403;
    creds = {
      "no credentials": { auth: null, expect: () => 401 },
      "wrong password": { auth: basic("hello", "nope"), expect: () => 401 },
      "read-write user": { auth: RW, expect: loggedIn(["pull", "push"]) },
      "read-only user": { auth: RO, expect: loggedIn(["pull"]) },
      "pull token": { auth: await token(["pull"]), expect: loggedIn(["pull"]) },
      "push-only token": { auth: await token(["push"]), expect: loggedIn(["push"]) },
      "pull+push token": { auth: await token(["pull", "push"]), expect: loggedIn(["pull", "push"]) },
      "token for team-a/*": {
        auth: await token(["pull", "push"], { repositories: ["team-a/*"] }),
        expect: (access, repo) => (access === "login" || repo === "team-a/app" ? "ok" : 403),
      },
      "anonymous (ANONYMOUS_PULL)": {
        auth: null,
        env: { ANONYMOUS_PULL: "true" },
        // The /v2/ probe still challenges, so clients with credentials send them.
        expect: (access) => (access === "push" || access === "pull+push" || access === "login" ? 401 : "ok"),
      },
    };
  });

  for (const kind of [
    "no credentials",
    "wrong password",
    "read-write user",
    "read-only user",
    "pull token",
    "push-only token",
    "pull+push token",
    "token for team-a/*",
    "anonymous (ANONYMOUS_PULL)",
  ]) {
    it(kind, async () => {
      const cred = creds[kind]!;
      const outcomes: string[] = [];
      const expected: string[] = [];
      for (const repo of ["team-a/app", "team-b/app"]) {
        for (const r of routes(manifest.digest, manifest.blobs[1]!)) {
          if (!r.path.includes("{repo}") && repo === "team-b/app") continue;
          const init: RequestInit = { method: r.method };
          if (r.method === "PUT") {
            init.body = manifest.text;
            init.headers = { "Content-Type": "application/vnd.oci.image.manifest.v1+json" };
          }
          const res = await call(r.path.replace("{repo}", repo), { ...init, auth: cred.auth, env: { ...env, ...cred.env } });
          const got = res.status === 401 || res.status === 403 ? String(res.status) : "ok";
          if (res.status >= 500) throw new Error(`${kind} ${r.route} ${repo}: ${res.status} ${await res.text()}`);
          outcomes.push(`${r.route} ${repo}: ${got}`);
          expected.push(`${r.route} ${repo}: ${cred.expect(r.access, r.route === "GET /v2/_catalog" ? "team-a/app" : repo)}`);
        }
      }
      expect(outcomes).toEqual(expected);
    });
  }
});

describe("anonymous pull", () => {
  it("is off unless configured", async () => {
    expect((await call("/v2/", { auth: null })).status).toBe(401);
    expect((await call("/v2/_catalog", { auth: null, env: { ANONYMOUS_PULL: "false" } })).status).toBe(401);
  });

  it("lets anyone pull, and asks for credentials on a push", async () => {
    const env = { ANONYMOUS_PULL: "true" };
    // The probe answers with a token challenge, as Docker Hub does, so that docker pulls
    // anonymously with a token from /token and logs in the same way.
    const probe = await call("/v2/", { auth: null, env });
    expect(probe.status).toBe(401);
    expect(probe.headers.get("WWW-Authenticate")).toBe('Bearer realm="https://registry.test/token",service="r2-registry"');
    const image = await imageManifest("public/app");
    expect((await putManifest("public/app", "v1", image.text)).status).toBe(201);
    const get = await call("/v2/public/app/manifests/v1", { auth: null, env });
    expect(get.status).toBe(200);
    expect(await sha256(await get.text())).toBe(image.digest);
    const push = await call("/v2/public/app/blobs/uploads/", { method: "POST", auth: null, env });
    expect(push.status).toBe(401);
    expect(push.headers.get("WWW-Authenticate")).toMatch(/^Bearer realm=/);
    expect((await call("/v2/public/app/blobs/uploads/", { method: "POST", env })).status).toBe(202);
  });

  it("hands out tokens: anonymous ones for pulls, and ones standing for valid credentials", async () => {
    const env = { ANONYMOUS_PULL: "true" };
    const token = async (auth: string | null) => {
      const res = await call("/token?service=r2-registry&scope=repository:public/app:pull,push", { auth, env });
      return { status: res.status, token: res.status === 200 ? ((await res.json()) as { token: string }).token : undefined };
    };
    const anonymous = await token(null);
    expect(anonymous.status).toBe(200);
    expect((await call("/v2/public/app/tags/list", { auth: `Bearer ${anonymous.token}`, env })).status).toBe(200);
    expect((await call("/v2/public/app/blobs/uploads/", { method: "POST", auth: `Bearer ${anonymous.token}`, env })).status).toBe(401);

    const user = await token(RW);
    expect(user.status).toBe(200);
    expect((await call("/v2/public/app/blobs/uploads/", { method: "POST", auth: `Bearer ${user.token}`, env })).status).toBe(202);
    const reader = await token(RO);
    expect((await call("/v2/public/app/blobs/uploads/", { method: "POST", auth: `Bearer ${reader.token}`, env })).status).toBe(403);

    expect((await token(basic("hello", "wrong"))).status).toBe(401);
    // Without public pulls there is no token endpoint.
    expect((await call("/token", { auth: null })).status).toBe(401);
    expect((await call("/v2/", { auth: "Bearer anonymous" })).status).toBe(401);
  });
});
