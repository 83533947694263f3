import type { ParsedManifest } from "../oci/manifest";
import type { CollectAllOptions, CollectAllReport, CollectOptions, CollectReport } from "./r2/gc";

/** Size and digest of a stored blob. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/** A byte range of a blob, inclusive of both ends. */
export interface ByteRange {
  start: number;
  end: number;
}

/** A blob's content, whole or a range of it. */
export interface BlobContent {
  digest: string;
  /** The whole blob's size; absent only when an upstream streams a blob without saying. */
  size?: number;
  body: ReadableStream<Uint8Array>;
  /** Set when only `range` of the blob is in `body`. */
  range?: ByteRange;
}

/** Where an upload session stands. */
export interface UploadStatus {
  id: string;
  name: string;
  /** Bytes received so far; the next chunk starts at this offset. */
  offset: number;
}

/** A stored manifest's identity. */
export interface ManifestInfo {
  digest: string;
  size: number;
  mediaType: string;
  /**
   * When the manifest was stored under this reference (for a tag: when the tag was last pushed);
   * absent when unknown (a manifest just fetched from an upstream).
   */
  modified?: Date;
}

/** A stored manifest with its exact bytes. */
export interface ManifestContent extends ManifestInfo {
  body: ReadableStream<Uint8Array>;
}

/** How a manifest came to be stored. */
export interface PutManifestOptions {
  /**
   * Cached from an upstream by pull-through, not pushed by a client: the repository does not
   * count as holding pushes (see {@link Registry.hasPushes}) for it.
   */
  cached?: boolean;
  /**
   * Tags (among those being written) to write only if they do not exist yet, atomically: an
   * immutable tag is created once and never overwritten. Those that existed are left as they were
   * and listed in {@link PutManifestResult.notCreated}.
   */
  createOnly?: readonly string[];
}

/** What a manifest push stored. */
export interface PutManifestResult extends ManifestInfo {
  /** Tags of {@link PutManifestOptions.createOnly} that already existed, so were not written. */
  notCreated?: string[];
}

/** A tag, the manifest it points at, and when it was last pushed. */
export interface TagRecord {
  tag: string;
  digest: string;
  /** The manifest's media type. */
  mediaType: string;
  /**
   * When a client last pushed a manifest under the tag (the same digest again included), or an
   * upstream's manifest was cached under it.
   */
  pushed: Date;
}

/** One page of a listing. */
export interface Page<T> {
  items: T[];
  /** True when more items follow the last one returned. */
  more: boolean;
}

/** What a listing asks for: up to `n` items after `last`. */
export interface PageRequest {
  n: number;
  last?: string;
}

/** A referrers listing: a page, optionally only manifests of one artifact type. */
export interface ReferrersRequest extends PageRequest {
  artifactType?: string;
}

/** A manifest that refers to another, as the referrers API lists it. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** A chunk of upload data and what the client said about it. */
export interface Chunk {
  body: ReadableStream<Uint8Array> | null;
  /** Content-Length, when the client sent one. */
  length?: number;
  /** Offset the client says the chunk starts at (from Content-Range). */
  start?: number;
}

/**
 * The storage-agnostic registry the HTTP handlers talk to. Implemented on R2 by `R2Registry`;
 * a pull-through wrapper implements the same interface.
 *
 * Methods throw `RegistryError` for a client's mistake (unknown upload, wrong digest, …).
 */
export interface Registry {
  /** Size and digest of a blob in a repository, or `null`. */
  statBlob(name: string, digest: string): Promise<BlobInfo | null>;
  /** A blob's bytes (or a range of them), or `null`. */
  getBlob(name: string, digest: string, range?: RangeRequest): Promise<BlobContent | null>;
  /** Removes a blob from a repository; false if it was not there. */
  deleteBlob(name: string, digest: string): Promise<boolean>;
  /** Makes a blob of repository `from` available in `name`; `null` if `from` lacks it. */
  mountBlob(name: string, digest: string, from: string): Promise<BlobInfo | null>;

  /** Stores a whole blob sent in one request, verified against its digest. */
  putBlob(name: string, digest: string, chunk: Chunk): Promise<BlobInfo>;

  /** Opens an upload session. */
  startUpload(name: string): Promise<UploadStatus>;
  /** The state of a session; throws BLOB_UPLOAD_UNKNOWN. */
  getUpload(name: string, id: string): Promise<UploadStatus>;
  /** Appends a chunk; throws RANGE_INVALID when it does not start where the last one ended. */
  appendUpload(name: string, id: string, chunk: Chunk): Promise<UploadStatus>;
  /** Appends an optional last chunk, verifies the digest and publishes the blob. */
  finishUpload(name: string, id: string, digest: string, chunk: Chunk): Promise<BlobInfo>;
  /** Abandons a session and what it stored. */
  cancelUpload(name: string, id: string): Promise<void>;

  /** A manifest by tag or digest, or `null`. */
  getManifest(name: string, reference: string): Promise<ManifestContent | null>;
  /** A manifest's identity by tag or digest, or `null`. */
  statManifest(name: string, reference: string): Promise<ManifestInfo | null>;
  /** Stores a validated manifest under its digest and, when `tag` is given, that tag. */
  putManifest(name: string, manifest: ParsedManifest, digest: string, tags: string[], options?: PutManifestOptions): Promise<PutManifestResult>;
  /** Deletes a tag, or a digest and every tag pointing at it; false if unknown. */
  deleteManifest(name: string, reference: string): Promise<boolean>;

  /**
   * True when the repository holds (or held) a manifest a client pushed, rather than only
   * manifests cached from an upstream; false for a repository that does not exist. A
   * repository stored before this was recorded counts as pushed. Pull-through never fills such
   * a repository unless told to. Absent: every repository counts as pushed.
   */
  hasPushes?(name: string): Promise<boolean>;

  /**
   * Every tag of a repository with its digest and push time, in lexical order (what tag policies
   * judge). Absent: the storage cannot tell when tags were pushed.
   */
  tagRecords?(name: string): AsyncIterable<TagRecord>;

  /** Tags of a repository in lexical order, or `null` if the repository is unknown. */
  listTags(name: string, page: PageRequest): Promise<Page<string> | null>;
  /** Repository names in lexical order. */
  listRepositories(page: PageRequest): Promise<Page<string>>;
  /** Descriptors of the manifests whose `subject` is `subject`, in digest order. */
  listReferrers(name: string, subject: string, page: ReferrersRequest): Promise<Page<ReferrerDescriptor>>;

  /**
   * Announces a manifest push that relies on `digests` (the manifest's own, its blobs and child
   * manifests), so a garbage collection running meanwhile spares them; waits while one deletes.
   * The push releases it once its manifest is stored or refused.
   */
  announce?(name: string, digests: string[]): Promise<{ release(): Promise<void> }>;
  /** Garbage collection of one repository, one bounded invocation of it (`cursor` continues one). */
  collect?(name: string, options: CollectOptions): Promise<CollectReport>;
  /** Garbage collection of every repository, abandoned uploads and unused upload bytes, likewise. */
  collectAll?(options: CollectAllOptions): Promise<CollectAllReport>;

  /**
   * The registry without pull-through (a wrapper's local store), for checks that must not reach an
   * upstream, such as a push's "is everything the manifest references here?". Absent: itself.
   */
  withoutUpstreams?(): Registry;
}

/** A byte range as asked for by a `Range` header: `bytes=a-b`, `bytes=a-` or `bytes=-n`. */
export type RangeRequest = { offset: number; length?: number } | { suffix: number };
