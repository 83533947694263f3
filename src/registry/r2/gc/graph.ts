import { RegistryError } from "../../../errors";
import { digestBytes, parseDigest } from "../../../oci/digest";
import { parseReferences } from "../../../oci/manifest";
import { keys, lastSegment, listAll } from "../keys";
import { storedDigest } from "../manifests";

/** One manifest of a repository and what it refers to. */
export interface ManifestNode {
  digest: string;
  /** Its keys: the digest key and every tag key pointing at it. */
  keys: string[];
  tags: string[];
  /** When its newest key was written, in ms since the epoch. */
  uploaded: number;
  size: number;
  blobs: string[];
  children: string[];
  subject?: string;
  /** A collection starts from it (tagged, recent, or stored since the collection looked). */
  root: boolean;
}

/** A manifest key as a listing shows it. */
export interface ManifestKey {
  key: string;
  digest: string;
  etag: string;
  uploaded: number;
}

/** The manifests of a repository, the referrers index entries, and who refers to whom. */
export interface RepositoryGraph {
  name: string;
  manifests: Map<string, ManifestNode>;
  /** Every manifest key by key, as listed. */
  manifestKeys: Map<string, ManifestKey>;
  /** `_referrers` entries: key, subject and referrer digests. */
  referrerEntries: { key: string; subject: string; referrer: string }[];
}

/** A graph as saved between the invocations of a collection (compact: keys by reference, blobs by index). */
export interface SavedGraph {
  /** Manifest keys: reference (tag or digest), digest (0 when it is the reference), etag, upload time. */
  k: [string, string | 0, string, number][];
  /** Manifests: digest, size, blob indexes into `b`, child digests, subject (0: none), root (1). */
  n: [string, number, number[], string[], string | 0, 0 | 1][];
  b: string[];
  /** Referrers index entries: subject, referrer. */
  r: [string, string][];
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** A graph with nothing in it yet. */
export function emptyGraph(name: string): RepositoryGraph {
  return { name, manifests: new Map(), manifestKeys: new Map(), referrerEntries: [] };
}

function addKey(node: ManifestNode, entry: ManifestKey): void {
  if (node.keys.includes(entry.key)) return;
  node.keys.push(entry.key);
  node.uploaded = Math.max(node.uploaded, entry.uploaded);
  const reference = lastSegment(entry.key);
  if (!parseDigest(reference)) node.tags.push(reference);
}

function corrupt(name: string, key: string): RegistryError {
  return new RegistryError(
    "UNKNOWN",
    `the manifest at ${key} is not a JSON object, so what it references cannot be known: garbage collection of ${name} stops rather than delete it; fix or delete that manifest`,
    { status: 500 },
  );
}

/**
 * Reads the manifest at `object.key` (one call) and adds it under the digest its listing or its
 * checksum gives; a manifest that is not JSON stops the collection (`corrupt`). Nothing when the
 * key was deleted meanwhile.
 */
async function readManifest(bucket: R2Bucket, graph: RepositoryGraph, object: R2Object, listed?: string): Promise<ManifestKey | undefined> {
  const body = await bucket.get(object.key);
  if (!body) return undefined;
  const bytes = new Uint8Array(await body.arrayBuffer());
  const digest = listed ?? storedDigest(body) ?? (await digestBytes(bytes));
  // The listing's etag and time: were the key rewritten since, the next listing reads it again.
  const entry: ManifestKey = { key: object.key, digest, etag: object.etag, uploaded: object.uploaded.getTime() };
  if (!graph.manifests.has(digest)) {
    const references = parseReferences(bytes);
    if (!references) throw corrupt(graph.name, object.key);
    graph.manifests.set(digest, {
      digest,
      keys: [],
      tags: [],
      uploaded: 0,
      size: bytes.byteLength,
      blobs: references.blobs,
      children: references.manifests,
      ...(references.subject ? { subject: references.subject } : {}),
      root: false,
    });
  }
  return entry;
}

/**
 * Adds listed manifest keys to a graph: keys whose digest the listing gives and whose manifest is
 * known cost nothing, one body is read per new digest (and per key whose digest the listing leaves
 * out): at most one call per key.
 */
async function addListed(bucket: R2Bucket, graph: RepositoryGraph, objects: R2Object[]): Promise<ManifestKey[]> {
  const added: ManifestKey[] = [];
  const fresh = new Map<string, R2Object[]>();
  const unknown: R2Object[] = [];
  for (const object of objects) {
    const digest = storedDigest(object);
    if (!digest) unknown.push(object);
    else if (graph.manifests.has(digest)) added.push({ key: object.key, digest, etag: object.etag, uploaded: object.uploaded.getTime() });
    else fresh.set(digest, [...(fresh.get(digest) ?? []), object]);
  }
  await forEachLimited([...fresh.entries()], 8, async ([digest, objects]) => {
    const preferred = objects.find((o) => o.key === keys.manifest(graph.name, digest)) ?? objects[0]!;
    const read = await readManifest(bucket, graph, preferred, digest);
    if (!read) return;
    for (const object of objects) {
      added.push(object === preferred ? read : { key: object.key, digest, etag: object.etag, uploaded: object.uploaded.getTime() });
    }
  });
  await forEachLimited(unknown, 8, async (object) => {
    const read = await readManifest(bucket, graph, object);
    if (read) added.push(read);
  });
  for (const entry of added) {
    graph.manifestKeys.set(entry.key, entry);
    addKey(graph.manifests.get(entry.digest)!, entry);
  }
  return added;
}

/**
 * Adds one page of a repository's manifest keys (after key `after`, at most `limit` keys) to a
 * graph, reading each new manifest: at most `1 + limit` calls. `last` is where the next page starts.
 *
 * @example
 * let page = await addManifestPage(bucket, graph, undefined, 1000);
 * while (!page.done) page = await addManifestPage(bucket, graph, page.last, 1000);
 */
export async function addManifestPage(
  bucket: R2Bucket,
  graph: RepositoryGraph,
  after: string | undefined,
  limit: number,
): Promise<{ last?: string; done: boolean }> {
  const page = await bucket.list({
    prefix: keys.manifestsPrefix(graph.name),
    delimiter: "/",
    limit: Math.max(1, Math.min(1000, limit)),
    include: ["customMetadata"],
    ...(after ? { startAfter: after } : {}),
  });
  await addListed(bucket, graph, page.objects);
  const last = page.objects[page.objects.length - 1]?.key ?? after;
  return { ...(last ? { last } : {}), done: !page.truncated };
}

/**
 * Adds one page (1,000 entries, one call) of the repository's referrers index to a graph.
 *
 * @example
 * const page = await addReferrerPage(bucket, graph, undefined);
 */
export async function addReferrerPage(bucket: R2Bucket, graph: RepositoryGraph, after: string | undefined): Promise<{ last?: string; done: boolean }> {
  const prefix = keys.referrersRoot(graph.name);
  const page = await bucket.list({ prefix, limit: 1000, ...(after ? { startAfter: after } : {}) });
  for (const object of page.objects) {
    const [subject, referrer, ...rest] = object.key.slice(prefix.length).split("/");
    if (subject && referrer && rest.length === 0) graph.referrerEntries.push({ key: object.key, subject, referrer });
  }
  const last = page.objects[page.objects.length - 1]?.key ?? after;
  return { ...(last ? { last } : {}), done: !page.truncated };
}

/** Makes the graph's keys and tags those of a newer listing (manifests it lacks must be added first). */
function reindex(graph: RepositoryGraph, listed: Map<string, ManifestKey>): void {
  graph.manifestKeys = listed;
  for (const node of graph.manifests.values()) {
    node.keys = [];
    node.tags = [];
    node.uploaded = 0;
  }
  for (const entry of listed.values()) {
    const node = graph.manifests.get(entry.digest);
    if (node) addKey(node, entry);
  }
}

/**
 * Lists every manifest key again (under the sweep lease), reading only keys stored or rewritten
 * since the graph saw them (a new etag or upload time), and makes what they hold roots: what a
 * push stored meanwhile is kept. Answers those keys.
 *
 * @example
 * const changed = await refresh(bucket, graph);
 */
export async function refresh(bucket: R2Bucket, graph: RepositoryGraph): Promise<ManifestKey[]> {
  const listed = new Map<string, ManifestKey>();
  const changed: R2Object[] = [];
  for await (const object of listAll(bucket, { prefix: keys.manifestsPrefix(graph.name), include: ["customMetadata"] })) {
    const known = graph.manifestKeys.get(object.key);
    // R2's etag hashes the bytes: a key deleted and pushed again with the same bytes keeps it, so
    // its upload time tells it apart (a manifest stored since the marking must be kept).
    if (known && known.etag === object.etag && known.uploaded === object.uploaded.getTime()) listed.set(object.key, known);
    else changed.push(object);
  }
  const added = await addListed(bucket, graph, changed);
  for (const entry of added) listed.set(entry.key, entry);
  reindex(graph, listed);
  for (const entry of added) graph.manifests.get(entry.digest)!.root = true;
  return added;
}

/**
 * Marks where a collection starts from: every manifest (`unreferenced`), or the tagged ones and
 * those newer than `cutoff` (`untagged`).
 */
export function markRoots(graph: RepositoryGraph, mode: "unreferenced" | "untagged", cutoff: number): void {
  for (const node of graph.manifests.values()) node.root = mode === "unreferenced" || node.tags.length > 0 || node.uploaded > cutoff;
}

/** The digests a collection starts from. */
export function rootsOf(graph: RepositoryGraph): string[] {
  return [...graph.manifests.values()].filter((node) => node.root).map((node) => node.digest);
}

/**
 * The manifests reachable from `roots`: children of live indexes, and referrers of live subjects
 * (from the manifests' own `subject` and from the referrers index).
 */
export function reachable(graph: RepositoryGraph, roots: Iterable<string>): Set<string> {
  const referrers = new Map<string, string[]>();
  const link = (subject: string, referrer: string) => referrers.set(subject, [...(referrers.get(subject) ?? []), referrer]);
  for (const node of graph.manifests.values()) if (node.subject) link(node.subject, node.digest);
  for (const entry of graph.referrerEntries) link(entry.subject, entry.referrer);
  const live = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const digest = queue.pop()!;
    if (live.has(digest)) continue;
    live.add(digest);
    const node = graph.manifests.get(digest);
    if (node) queue.push(...node.children);
    queue.push(...(referrers.get(digest) ?? []));
  }
  return live;
}

/** The blobs the `live` manifests reference. */
export function liveBlobs(graph: RepositoryGraph, live: Set<string>): Set<string> {
  const blobs = new Set<string>();
  for (const digest of live) for (const blob of graph.manifests.get(digest)?.blobs ?? []) blobs.add(blob);
  return blobs;
}

/** The graph in its saved form. */
export function saveGraph(graph: RepositoryGraph): SavedGraph {
  const table = new Map<string, number>();
  const index = (blob: string) => {
    let i = table.get(blob);
    if (i === undefined) table.set(blob, (i = table.size));
    return i;
  };
  const prefix = keys.manifestsPrefix(graph.name);
  const referrers = keys.referrersRoot(graph.name);
  return {
    k: [...graph.manifestKeys.values()].map((e) => {
      const reference = e.key.slice(prefix.length);
      return [reference, reference === e.digest ? 0 : e.digest, e.etag, e.uploaded];
    }),
    n: [...graph.manifests.values()].map((m) => [m.digest, m.size, m.blobs.map(index), m.children, m.subject ?? 0, m.root ? 1 : 0]),
    b: [...table.keys()],
    r: graph.referrerEntries.filter((e) => e.key === `${referrers}${e.subject}/${e.referrer}`).map((e) => [e.subject, e.referrer]),
  };
}

/** A graph back from its saved form. */
export function loadGraph(name: string, saved: SavedGraph): RepositoryGraph {
  const graph = emptyGraph(name);
  for (const [digest, size, blobs, children, subject, root] of saved.n) {
    graph.manifests.set(digest, {
      digest,
      keys: [],
      tags: [],
      uploaded: 0,
      size,
      blobs: blobs.map((i) => saved.b[i]!),
      children,
      ...(subject ? { subject } : {}),
      root: root === 1,
    });
  }
  for (const [reference, digest, etag, uploaded] of saved.k) {
    const entry = { key: keys.manifest(name, reference), digest: digest || reference, etag, uploaded };
    graph.manifestKeys.set(entry.key, entry);
    const node = graph.manifests.get(entry.digest);
    if (node) addKey(node, entry);
  }
  graph.referrerEntries = saved.r.map(([subject, referrer]) => ({ key: keys.referrer(name, subject, referrer), subject, referrer }));
  return graph;
}
