import { parseDigest } from "../../../oci/digest";
import { referencesOf } from "../../../oci/manifest";
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
  manifests: Map<string, ManifestNode>;
  /** Every manifest key by key, as listed. */
  manifestKeys: Map<string, ManifestKey>;
  /** `_referrers` entries: key, subject and referrer digests. */
  referrerEntries: { key: string; subject: string; referrer: string }[];
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Lists a repository's manifest keys with the digest each holds. */
export async function listManifestKeys(bucket: R2Bucket, name: string): Promise<Map<string, ManifestKey>> {
  const found = new Map<string, ManifestKey>();
  const unknown: R2Object[] = [];
  for await (const object of listAll(bucket, { prefix: keys.manifestsPrefix(name), include: ["customMetadata"] })) {
    const digest = storedDigest(object);
    if (digest) found.set(object.key, { key: object.key, digest, etag: object.etag, uploaded: object.uploaded.getTime() });
    else unknown.push(object);
  }
  // Listings may leave out checksums: a head has them.
  await forEachLimited(unknown, 8, async (object) => {
    const full = await bucket.head(object.key);
    const digest = full ? storedDigest(full) : undefined;
    if (full && digest) found.set(object.key, { key: object.key, digest, etag: full.etag, uploaded: full.uploaded.getTime() });
  });
  return found;
}

/**
 * Adds the manifests behind `listed` keys to a graph, reading one body per digest not yet in it.
 *
 * @example
 * const graph = emptyGraph();
 * await addManifests(bucket, "team/app", graph, await listManifestKeys(bucket, "team/app"));
 */
export async function addManifests(bucket: R2Bucket, name: string, graph: RepositoryGraph, listed: Map<string, ManifestKey>): Promise<void> {
  const fresh = new Map<string, ManifestKey[]>();
  for (const entry of listed.values()) {
    graph.manifestKeys.set(entry.key, entry);
    const node = graph.manifests.get(entry.digest);
    if (node) {
      if (!node.keys.includes(entry.key)) addKey(node, entry);
      continue;
    }
    fresh.set(entry.digest, [...(fresh.get(entry.digest) ?? []), entry]);
  }
  await forEachLimited([...fresh.entries()], 8, async ([digest, entries]) => {
    const preferred = entries.find((e) => e.key === keys.manifest(name, digest)) ?? entries[0]!;
    const object = await bucket.get(preferred.key);
    if (!object) return;
    const bytes = new Uint8Array(await object.arrayBuffer());
    const references = referencesOf(bytes);
    const node: ManifestNode = {
      digest,
      keys: [],
      tags: [],
      uploaded: 0,
      size: bytes.byteLength,
      blobs: references.blobs,
      children: references.manifests,
      ...(references.subject ? { subject: references.subject } : {}),
    };
    for (const entry of entries) addKey(node, entry);
    graph.manifests.set(digest, node);
  });
}

function addKey(node: ManifestNode, entry: ManifestKey): void {
  node.keys.push(entry.key);
  node.uploaded = Math.max(node.uploaded, entry.uploaded);
  const reference = lastSegment(entry.key);
  if (!parseDigest(reference)) node.tags.push(reference);
}

/** Makes the graph's keys and tags those of a newer listing (manifests it lacks must be added first). */
export function reindex(graph: RepositoryGraph, listed: Map<string, ManifestKey>): void {
  graph.manifestKeys = listed;
  for (const node of graph.manifests.values()) {
    node.keys = [];
    node.tags = [];
  }
  for (const entry of listed.values()) {
    const node = graph.manifests.get(entry.digest);
    if (node) addKey(node, entry);
  }
}

/** Reads a repository's manifests and its referrers index. */
export async function loadGraph(bucket: R2Bucket, name: string): Promise<RepositoryGraph> {
  const graph: RepositoryGraph = { manifests: new Map(), manifestKeys: new Map(), referrerEntries: [] };
  await addManifests(bucket, name, graph, await listManifestKeys(bucket, name));
  const prefix = keys.referrersRoot(name);
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, limit: 1000, ...(cursor ? { cursor } : {}) });
    for (const object of page.objects) {
      const [subject, referrer, ...rest] = object.key.slice(prefix.length).split("/");
      if (subject && referrer && rest.length === 0) graph.referrerEntries.push({ key: object.key, subject, referrer });
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return graph;
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
