/**
 * Streamed HTTP(S) requests for the byte-path benchmarks: a body sent from a Node stream (with a
 * Content-Length, or chunked when none is given), and a GET whose body is counted and thrown away,
 * each timed. Self-signed certificates are accepted.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import type { GeneratedBlob } from "../test/e2e/lib/generated-blob.ts";
import type { Target } from "./lib.ts";

export interface Streamed {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  seconds: number;
}

/** Basic authorization of a target, if it has credentials. */
export function authOf(target: Target): Record<string, string> {
  return target.username ? { authorization: `Basic ${Buffer.from(`${target.username}:${target.password}`).toString("base64")}` } : {};
}

/** Sends `body` to `url`; chunked (no Content-Length) unless `headers` give one. */
export function streamUpload(method: string, url: string | URL, headers: Record<string, string>, body: Readable): Promise<Streamed> {
  const request = String(url).startsWith("https:") ? httpsRequest : httpRequest;
  const began = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, rejectUnauthorized: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8"), seconds: (performance.now() - began) / 1000 }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    body.on("error", (error) => req.destroy(error));
    body.pipe(req);
  });
}

/** GETs `url`, counting and discarding the body; throws unless 200. */
export function drain(url: string | URL, headers: Record<string, string> = {}): Promise<{ bytes: number; seconds: number }> {
  const request = String(url).startsWith("https:") ? httpsRequest : httpRequest;
  const began = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, rejectUnauthorized: false }, (res) => {
      let bytes = 0;
      res.on("data", (chunk: Buffer) => (bytes += chunk.length));
      res.on("end", () => (res.statusCode === 200 ? resolve({ bytes, seconds: (performance.now() - began) / 1000 }) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** A generated blob as a stream of 1 MiB chunks, each passed to `seen` (e.g. a hash) on the way. */
export function blobStream(blob: GeneratedBlob, seen: (chunk: Buffer) => void): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < blob.size; offset += 2 ** 20) {
        const chunk = blob.bytes(offset, 2 ** 20);
        seen(chunk);
        yield chunk;
      }
    })(),
  );
}
