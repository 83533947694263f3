/**
 * The destination: `[http(s)://]host[:port]/repository[:tag][@digest]`, and which scheme to talk
 * to it with (plain HTTP for localhost, 127.0.0.1 and [::1] unless --https; HTTPS otherwise).
 */

export interface Target {
  /** "127.0.0.1:9999", "registry.example.workers.dev". */
  host: string;
  /** "team/app". */
  repository: string;
  /** The tag to put the root manifest under (undefined when pushing by digest only). */
  tag?: string;
  /** A digest the root manifest must have, when given as `@sha256:…`. */
  digest?: string;
  /** "https://host" or "http://host". */
  baseUrl: string;
  /** Plain HTTP chosen only because the host is a loopback one (no scheme forced). */
  httpByDefault: boolean;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export function isLoopback(host: string): boolean {
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0]!;
  return name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

export function parseTarget(text: string, scheme: { https?: boolean; http?: boolean } = {}): Target {
  let rest = text;
  let explicit: "http" | "https" | undefined;
  const m = /^(https?):\/\//.exec(rest);
  if (m) {
    explicit = m[1] as "http" | "https";
    rest = rest.slice(m[0].length);
  }
  const slash = rest.indexOf("/");
  if (slash <= 0) throw new Error(`destination ${JSON.stringify(text)} must look like host[:port]/repository[:tag]`);
  const host = rest.slice(0, slash);
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/.test(host)) throw new Error(`destination ${JSON.stringify(text)}: invalid host ${JSON.stringify(host)}`);
  let path = rest.slice(slash + 1);
  let digest: string | undefined;
  const at = path.indexOf("@");
  if (at >= 0) {
    digest = path.slice(at + 1);
    path = path.slice(0, at);
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new Error(`destination ${JSON.stringify(text)}: invalid digest ${JSON.stringify(digest)}`);
  }
  let tag: string | undefined;
  const colon = path.lastIndexOf(":");
  if (colon > path.lastIndexOf("/")) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw new Error(`destination ${JSON.stringify(text)}: invalid tag ${JSON.stringify(tag)}`);
  }
  if (!path || !path.split("/").every((c) => COMPONENT.test(c))) {
    throw new Error(`destination ${JSON.stringify(text)}: invalid repository name ${JSON.stringify(path)} (lowercase letters, digits, . _ - and /)`);
  }
  if (!tag && !digest) tag = "latest";
  if (scheme.http && scheme.https) throw new Error("--http and --https contradict each other");
  const https = explicit ? explicit === "https" : scheme.https ? true : scheme.http ? false : !isLoopback(host);
  const httpByDefault = !explicit && !scheme.https && !scheme.http && !https;
  return { host, repository: path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}), baseUrl: `${https ? "https" : "http"}://${host}`, httpByDefault };
}

/** "host/repo:tag". */
export function formatTarget(t: Target): string {
  return `${t.host}/${t.repository}${t.tag ? `:${t.tag}` : ""}`;
}
