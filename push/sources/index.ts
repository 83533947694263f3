/**
 * `--source` specifications and how each becomes a push plan:
 *   docker:<image>            an image in the local Docker engine (docker save to a temp file)
 *   archive:<file>[:<name>]   a `docker save` archive, or an OCI layout in a tar
 *   oci:<dir>[:<ref>]         an OCI image layout directory
 *   oci-archive:<file>[:<ref>] an OCI layout in a tar (archive: detects it too)
 * A bare path is an OCI layout if it is a directory, an archive if it is a file.
 */
import { existsSync, statSync } from "node:fs";
import type { PushPlan } from "../image.ts";
import { TarIndex } from "../tar.ts";
import { planDockerArchive, type DockerArchiveOptions } from "./docker-archive.ts";
import { saveFromDocker } from "./docker-engine.ts";
import { planOciLayout } from "./oci-layout.ts";
import { DirectoryStore, TarStore } from "./store.ts";

export type SourceKind = "docker" | "archive" | "oci";

export interface SourceSpec {
  kind: SourceKind;
  /** Image name (docker) or path (archive, oci). */
  location: string;
  /** Which image of an archive or layout. */
  ref?: string;
}

const PREFIXES: Record<string, SourceKind> = {
  "docker:": "docker",
  "docker-daemon:": "docker",
  "archive:": "archive",
  "docker-archive:": "archive",
  "oci-archive:": "archive",
  "oci:": "oci",
};

/** Splits "<path>[:<ref>]", preferring a path that exists as given. */
function splitPathRef(text: string): { location: string; ref?: string } {
  if (existsSync(text)) return { location: text };
  const colon = text.lastIndexOf(":");
  if (colon > 0) {
    const location = text.slice(0, colon);
    const ref = text.slice(colon + 1);
    if (existsSync(location) && ref) return { location, ref };
    // "path:name:tag" (an archive entry named with a tag).
    const first = text.indexOf(":");
    if (first > 0 && first < colon && existsSync(text.slice(0, first))) return { location: text.slice(0, first), ref: text.slice(first + 1) };
  }
  throw new Error(`no such file or directory: ${text}`);
}

export function parseSource(spec: string): SourceSpec {
  for (const [prefix, kind] of Object.entries(PREFIXES)) {
    if (!spec.startsWith(prefix)) continue;
    const rest = spec.slice(prefix.length);
    if (!rest) throw new Error(`--source ${spec}: nothing after "${prefix}"`);
    if (kind === "docker") return { kind, location: rest };
    return { kind, ...splitPathRef(rest) };
  }
  const { location, ref } = splitPathRef(spec);
  return { kind: statSync(location).isDirectory() ? "oci" : "archive", location, ...(ref ? { ref } : {}) };
}

export interface OpenOptions extends DockerArchiveOptions {
  dockerCli?: string;
}

/** Reads the source and plans the push. The caller must call plan.cleanup(). */
export async function planSource(source: SourceSpec, opts: OpenOptions): Promise<PushPlan> {
  if (source.kind === "oci") {
    if (!statSync(source.location).isDirectory()) throw new Error(`oci:${source.location} is not a directory (use archive: for a tar)`);
    return planOciLayout(new DirectoryStore(source.location), source.ref, opts, async () => {});
  }
  if (source.kind === "archive") {
    return planArchive(source.location, source.ref, opts, async () => {});
  }
  const saved = await saveFromDocker(source.location, { tmpDir: opts.tmpDir, dockerCli: opts.dockerCli, log: opts.log });
  try {
    const plan = await planArchive(saved.path, source.location, opts, saved.remove);
    return { ...plan, description: `docker image ${source.location}` };
  } catch (err) {
    await saved.remove();
    throw err;
  }
}

async function planArchive(path: string, ref: string | undefined, opts: OpenOptions, cleanup: () => Promise<void>): Promise<PushPlan> {
  const tar = await TarIndex.open(path);
  if (tar.has("manifest.json")) return planDockerArchive(tar, ref, opts, cleanup);
  if (tar.has("oci-layout") && tar.has("index.json")) return planOciLayout(new TarStore(tar), ref, opts, cleanup);
  throw new Error(`archive ${path} is neither a docker save archive (no manifest.json) nor an OCI layout (no oci-layout and index.json)`);
}
