/**
 * A seeded fuzzer: thousands of mutated requests (paths, methods, headers, queries, bodies) sent to
 * the dev server over keep-alive HTTPS, 8 at a time. No answer may be a 5xx (but a retryable 503),
 * the server must stay up, and the images pushed before the fuzzing must pull back unchanged.
 * `FUZZ_SEED=<n>` replays a run; `FUZZ_REQUESTS=<n>` changes how many requests it sends.
 */
import { createHash } from "node:crypto";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prng, type Rng } from "../../lib/prng.ts";
import { Skopeo } from "../../e2e/lib/clients.ts";
import { startDevServer, type RunningDevServer } from "../../e2e/lib/dev-server.ts";
import { buildFixtures, skopeoPush, type Fixtures } from "../../e2e/lib/fixtures.ts";
import { MediaType, readOciLayout } from "../../e2e/lib/oci-image.ts";
import { cleanupAll, makeTempDir, removeTempDir } from "../../e2e/lib/processes.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 3000);
const CONCURRENCY = 8;

interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

interface Answer {
  status: number;
  body: string;
}

const sha256 = (data: Buffer | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Everything the fuzzer knows about the registry: real names, digests, sessions and a manifest. */
interface Corpus {
  fuzzRepos: string[];
  keepRepos: string[];
  digests: string[];
  tags: string[];
  sessions: string[];
  manifest: string;
}

const METHODS = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];
const NASTY = ["", "..", ".", "%00", "%2F", "%2e%2e", "%ZZ", "é", "%E9", "%FF%FE", "~", "@", ";", "%0d%0a", "*", "'\"", "$(id)", "a".repeat(300), "A"];
const MEDIA_TYPES = [
  MediaType.ociManifest,
  MediaType.ociIndex,
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v1+prettyjws",
  "application/json",
  "text/plain",
  "",
  "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
];

function randomString(rng: Rng, max = 40): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.:/%@+=~ ";
  return Array.from({ length: rng.int(max) }, () => alphabet[rng.int(alphabet.length)]).join("");
}

function randomNumberish(rng: Rng): string {
  return rng.pick(["0", "1", "-1", "1000", "1001", "99999999999999999999", "1.5", "abc", "", "1e3", " 5", "0x10", String(rng.int(5000))]);
}

function randomRange(rng: Rng): string {
  const a = rng.int(2000);
  const b = rng.int(2000);
  return rng.pick([`${a}-${b}`, `bytes=${a}-${b}`, `bytes ${a}-${b}/*`, `-${a}`, `${a}-`, "0-0", "garbage", `${a}-${b}-${a}`, "bytes=0-1,3-4", "99999999999999999-99999999999999999"]);
}

/** One plausible request, built from what the corpus knows. */
function baseRequest(rng: Rng, corpus: Corpus, auth: string): Sent {
  const anyRepo = () => rng.pick([...corpus.fuzzRepos, ...corpus.keepRepos]);
  const fuzzRepo = () => rng.pick(corpus.fuzzRepos);
  const digest = () => (rng.chance(0.8) ? rng.pick(corpus.digests) : `sha256:${randomString(rng, 70)}`);
  const ref = () => (rng.chance(0.5) ? rng.pick(corpus.tags) : digest());
  const session = () => rng.pick(corpus.sessions);
  const headers: Record<string, string> = { authorization: auth };
  const kind = rng.int(16);
  switch (kind) {
    case 0:
      return { method: "GET", path: "/v2/", headers };
    case 1:
      return { method: "GET", path: `/v2/_catalog?n=${randomNumberish(rng)}&last=${encodeURIComponent(randomString(rng))}`, headers };
    case 2:
      return { method: "GET", path: `/v2/${anyRepo()}/tags/list?n=${randomNumberish(rng)}&last=${encodeURIComponent(randomString(rng))}`, headers };
    case 3:
      return {
        method: rng.pick(["GET", "HEAD"]),
        path: `/v2/${anyRepo()}/manifests/${ref()}`,
        headers: { ...headers, accept: rng.pick(MEDIA_TYPES) },
      };
    case 4:
      return {
        method: "PUT",
        path: `/v2/${fuzzRepo()}/manifests/${rng.chance(0.7) ? rng.pick(corpus.tags) : sha256(corpus.manifest)}`,
        headers: { ...headers, "content-type": rng.pick(MEDIA_TYPES) },
        body: Buffer.from(corpus.manifest),
      };
    case 5:
      return { method: "DELETE", path: `/v2/${fuzzRepo()}/manifests/${ref()}`, headers };
    case 6: {
      const query = rng.pick([
        "",
        `?digest=${digest()}`,
        `?mount=${digest()}&from=${anyRepo()}`,
        `?mount=${digest()}`,
        `?from=${anyRepo()}`,
      ]);
      return { method: "POST", path: `/v2/${fuzzRepo()}/blobs/uploads/${query}`, headers, body: Buffer.from(randomString(rng, 200)) };
    }
    case 7:
      return {
        method: "PATCH",
        path: session(),
        headers: { ...headers, "content-range": randomRange(rng), "content-type": "application/octet-stream" },
        body: Buffer.from(randomString(rng, 500)),
      };
    case 8:
      return { method: "PUT", path: `${session()}${session().includes("?") ? "&" : "?"}digest=${digest()}`, headers, body: Buffer.from(randomString(rng, 100)) };
    case 9:
      return { method: rng.pick(["GET", "DELETE"]), path: session(), headers };
    case 10:
      return {
        method: rng.pick(["GET", "HEAD"]),
        path: `/v2/${anyRepo()}/blobs/${digest()}`,
        headers: rng.chance(0.5) ? { ...headers, range: randomRange(rng) } : headers,
      };
    case 11:
      return { method: "DELETE", path: `/v2/${fuzzRepo()}/blobs/${digest()}`, headers };
    case 12:
      return { method: "GET", path: `/v2/${anyRepo()}/referrers/${digest()}?artifactType=${encodeURIComponent(randomString(rng))}&n=${randomNumberish(rng)}`, headers };
    case 13:
      return {
        method: "POST",
        path: `/v2/${fuzzRepo()}/gc?mode=${rng.pick(["unreferenced", "untagged", "x", ""])}&dry_run=${rng.pick(["true", "false", "maybe"])}&grace=${randomNumberish(rng)}`,
        headers,
      };
    case 14:
      return {
        method: "OPTIONS",
        path: `/v2/${anyRepo()}/manifests/${ref()}`,
        headers: { origin: rng.pick(["https://ui.example", "null", randomString(rng)]), "access-control-request-method": rng.pick(METHODS) },
      };
    default:
      return { method: "GET", path: `/token?scope=${encodeURIComponent(randomString(rng))}&service=${encodeURIComponent(randomString(rng))}`, headers };
  }
}

/** Bends a request: its path, method, headers, query or body. */
function mutate(rng: Rng, sent: Sent): Sent {
  const out: Sent = { ...sent, headers: { ...sent.headers } };
  const mutations = 1 + rng.int(3);
  for (let m = 0; m < mutations; m++) {
    switch (rng.int(9)) {
      case 0: {
        const parts = out.path.split("/");
        parts[1 + rng.int(parts.length - 1)] = rng.pick(NASTY);
        out.path = parts.join("/");
        break;
      }
      case 1: {
        const at = rng.int(out.path.length + 1);
        out.path = out.path.slice(0, at) + rng.pick(NASTY) + out.path.slice(at);
        break;
      }
      case 2:
        out.method = rng.pick(METHODS);
        break;
      case 3:
        out.headers[rng.pick(["content-range", "range", "content-type", "accept", "docker-content-digest", "content-encoding"])] = rng.chance(0.5)
          ? randomRange(rng)
          : randomString(rng, 80);
        break;
      case 4:
        out.headers.authorization = rng.pick([
          "",
          "Basic",
          "Basic !!!",
          `Basic ${Buffer.from(randomString(rng)).toString("base64")}`,
          "Bearer a.b.c",
          `Bearer ${Buffer.from("{}").toString("base64url")}.${Buffer.from('{"capabilities":["push"]}').toString("base64url")}.`,
          sent.headers.authorization ?? "",
        ]);
        break;
      case 5:
        out.path += `${out.path.includes("?") ? "&" : "?"}${rng.pick(["n", "last", "digest", "mount", "from", "tag", "artifactType", "mode"])}=${encodeURIComponent(randomString(rng))}`;
        break;
      case 6:
        if (out.body && out.body.length > 0) {
          const body = Buffer.from(out.body);
          for (let i = 0; i < 1 + rng.int(8); i++) body[rng.int(body.length)] = rng.int(256);
          out.body = rng.chance(0.3) ? body.subarray(0, rng.int(body.length)) : body;
        } else {
          out.body = Buffer.from(randomString(rng, 300));
        }
        break;
      case 7:
        out.body = Buffer.from(rng.pick(["[".repeat(100_000), '{"schemaVersion":2,"layers":'.repeat(5000), "null", "{}", '{"mediaType":' + '"x",'.repeat(10)]));
        break;
      default:
        out.path = out.path.replace(/sha256:[0-9a-f]{64}/, `sha256:${randomString(rng, 64)}`);
    }
  }
  return out;
}

const DESTRUCTIVE = new Set(["PUT", "POST", "PATCH", "DELETE"]);

/**
 * Sends one request. A body always goes with its Content-Length, as registry clients send them:
 * workerd's local HTTP server does not consume a chunked body on GET, DELETE or OPTIONS, and then
 * reads it as the next request on the connection (a `wrangler dev` limitation, not the Worker's).
 */
function send(agent: Agent, base: URL, sent: Sent): Promise<Answer> {
  const body = sent.method === "GET" || sent.method === "HEAD" ? undefined : sent.body;
  const headers = body ? { ...sent.headers, "content-length": String(body.length) } : sent.headers;
  return new Promise((resolve, reject) => {
    let req;
    try {
      req = request(
        { host: base.hostname, port: base.port, method: sent.method, path: sent.path, headers, agent, timeout: 60_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8").slice(0, 500) }));
          res.on("error", reject);
        },
      );
    } catch (error) {
      // Node refuses to send it (a character no HTTP request may carry): nothing to test.
      resolve({ status: -1, body: String(error) });
      return;
    }
    req.on("timeout", () => req.destroy(new Error("no answer within 60 s")));
    req.on("error", reject);
    req.end(body);
  });
}

describe("fuzzing the dev server", () => {
  let server: RunningDevServer | undefined;
  let work: string | undefined;
  let fx: Fixtures;
  let skopeo: Skopeo;

  beforeAll(async () => {
    work = makeTempDir("robust-fuzz");
    fx = buildFixtures(work);
    skopeo = new Skopeo(join(work, "skopeo"));
    // Its random credentials would soon get 127.0.0.1 limited (LOGIN_FAILURE_LIMIT), and most of
    // its requests answered 429 before they reach anything: fuzz the registry, not the limit.
    server = await startDevServer({ env: { LOGIN_FAILURE_LIMIT: "0" } });
    await skopeoPush(skopeo, server, fx.layoutDir, fx.tags.layered, "keep/layered");
    await skopeoPush(skopeo, server, fx.layoutDir, fx.tags.multiarch, "keep/multiarch");
    await skopeoPush(skopeo, server, fx.layoutDir, fx.tags.layered, "fuzz/a");
  });
  afterAll(() => cleanupAll([() => server?.stop(), () => removeTempDir(work)]));

  it(`answers ${REQUESTS} mutated requests (seed ${SEED}) without a 5xx, and keeps what was pushed`, async () => {
    const s = server!;
    const base = new URL(s.url);
    const auth = `Basic ${Buffer.from(`${s.username}:${s.password}`).toString("base64")}`;
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, rejectUnauthorized: false });
    const rng = prng(SEED);

    // Upload sessions for the fuzzer to poke at.
    const sessions: string[] = [];
    for (let i = 0; i < 4; i++) {
      const started = await new Promise<string>((resolve, reject) => {
        const req = request(
          { host: base.hostname, port: base.port, method: "POST", path: `/v2/fuzz/${i % 2 ? "a" : "b/c"}/blobs/uploads/`, headers: { authorization: auth }, agent },
          (res) => {
            res.resume();
            resolve(res.headers.location ?? "");
          },
        );
        req.on("error", reject);
        req.end();
      });
      sessions.push(started);
    }
    const corpus: Corpus = {
      fuzzRepos: ["fuzz/a", "fuzz/b/c", "fuzz/new"],
      keepRepos: ["keep/layered", "keep/multiarch"],
      digests: [...fx.digests.layered.layers, ...fx.digests.layered.configs, fx.digests.layered.root, fx.digests.multiarch.root, ...fx.digests.multiarch.manifests],
      tags: [fx.tags.layered, fx.tags.multiarch, "latest", "v1.0"],
      sessions,
      manifest: fx.layered.manifest.bytes.toString(),
    };

    const statuses = new Map<number, number>();
    const failures: string[] = [];
    let next = 0;
    const requests: Sent[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      let sent = baseRequest(rng, corpus, auth);
      if (rng.chance(0.75)) sent = mutate(rng, sent);
      // The images pushed before must survive: no writes that could reach them.
      if (DESTRUCTIVE.has(sent.method) && /keep/i.test(decodeURIComponentSafe(sent.path))) sent = { ...sent, method: "GET" };
      requests.push(sent);
    }
    const worker = async () => {
      while (next < requests.length) {
        const index = next++;
        const sent = requests[index]!;
        try {
          const answer = await send(agent, base, sent);
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          const retryable = answer.status === 503 && answer.body.includes("UNAVAILABLE");
          if (answer.status >= 500 && !retryable) failures.push(`#${index} ${sent.method} ${sent.path.slice(0, 200)} → ${answer.status} ${answer.body}`);
        } catch (error) {
          failures.push(`#${index} ${sent.method} ${sent.path.slice(0, 200)} → ${String(error)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    agent.destroy();
    console.log(`fuzz seed ${SEED}: ${REQUESTS} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
    expect(failures.slice(0, 20)).toEqual([]);
    expect(s.process.running).toBe(true);

    // Everything pushed before the fuzzing pulls back byte for byte.
    const back = join(work!, "pulled");
    for (const [repo, tag] of [
      ["keep/layered", fx.tags.layered],
      ["keep/multiarch", fx.tags.multiarch],
    ] as const) {
      await skopeo.run(
        ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-creds", `${s.username}:${s.password}`, `docker://${s.host}/${repo}:${tag}`, `oci:${back}:${tag}`],
        { redact: [s.password] },
      );
    }
    expect(readOciLayout(back, fx.tags.layered)).toMatchObject({ ...fx.digests.layered, rootMediaType: MediaType.ociManifest });
    expect(readOciLayout(back, fx.tags.multiarch)).toMatchObject({ ...fx.digests.multiarch, rootMediaType: MediaType.ociIndex });
  });
});

function decodeURIComponentSafe(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
