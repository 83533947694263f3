/**
 * Glue shared by the test files: start the registry under test for one file, print its log tail
 * when a test fails, and small assertions about commands and registry answers.
 */
import { beforeEach, expect } from "vitest";
import { describeResponse, headerValue, RegistryClient, type HttpResponse } from "./http.ts";
import { sha256 } from "./oci-image.ts";
import { describeResult, type RunResult } from "./processes.ts";
import type { TestRegistry } from "./target.ts";

/** Prints the end of the registry's output whenever a test of the current file fails. */
export function registryLogsOnFailure(get: () => TestRegistry | undefined): void {
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      const r = get();
      if (!r) return;
      const logs = r.logs().trim();
      console.error(`--- ${r.kind} registry at ${r.url}: last output ---\n${logs.slice(-4000) || "(none)"}`);
    });
  });
}

/** Words registries and clients use when credentials are refused. */
export const AUTH_REFUSED = /unauthori[sz]ed|authentication required|invalid username|incorrect username|401/i;

/** Asserts that a command failed (non-zero exit) and that its output matches `pattern`. */
export function expectFailure(result: RunResult, pattern: RegExp): void {
  expect(result.code, `expected this command to fail:\n${describeResult(result)}`).not.toBe(0);
  expect(`${result.stdout}\n${result.stderr}`, `unexpected error output:\n${describeResult(result)}`).toMatch(pattern);
}

/**
 * GETs a manifest by tag or digest and checks what a client relies on: 200, the
 * Docker-Content-Digest header equals `digest`, and the body hashes to `digest`.
 * Returns the response for further checks.
 */
export async function expectManifestDigest(
  client: RegistryClient,
  repo: string,
  reference: string,
  digest: string,
  accept: readonly string[] = RegistryClient.allManifestTypes,
): Promise<HttpResponse> {
  const res = await client.manifest(repo, reference, accept);
  const what = describeResponse("GET", `${client.baseUrl}/v2/${repo}/manifests/${reference}`, res);
  expect(res.status, what).toBe(200);
  expect(headerValue(res, "docker-content-digest"), what).toBe(digest);
  expect(sha256(res.body), `body digest of ${what}`).toBe(digest);
  return res;
}

/** Parses a JSON document, with the text in the error if it is not JSON. */
export function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${what} is not JSON:\n${text.slice(0, 2000)}`);
  }
}
