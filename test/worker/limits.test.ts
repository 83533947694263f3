import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { MAX_UPLOAD_AGE_SECONDS, parseConfig } from "../../src/config";

const MiB = 1024 * 1024;

describe("settings bounded by the platform's limits", () => {
  it("UPLOAD_PART_SIZE is 5 MiB to 32 MiB (parts are held in the Worker's memory); outside, a warning and the default", () => {
    expect(parseConfig({ UPLOAD_PART_SIZE: String(5 * MiB) }).uploadPartSize).toBe(5 * MiB);
    expect(parseConfig({ UPLOAD_PART_SIZE: String(32 * MiB) }).uploadPartSize).toBe(32 * MiB);
    for (const value of [String(5 * 1024 * MiB), String(32 * MiB + 1), String(5 * MiB - 1), "lots"]) {
      const config = parseConfig({ UPLOAD_PART_SIZE: value });
      expect(config.uploadPartSize, value).toBeUndefined(); // the default (8 MiB)
      expect(config.warnings, value).toHaveLength(1);
      expect(config.warnings[0]).toMatch(/UPLOAD_PART_SIZE must be .* from 5242880 .* to 33554432 .*using the default/);
    }
  });

  it("GC_UPLOAD_MAX_AGE is at most 7 days (R2 aborts unfinished multipart uploads then): longer is lowered, with a warning", () => {
    expect(parseConfig({ GC_UPLOAD_MAX_AGE: "3600" }).gc.uploadMaxAgeMs).toBe(3_600_000);
    expect(parseConfig({ GC_UPLOAD_MAX_AGE: String(MAX_UPLOAD_AGE_SECONDS) }).warnings).toEqual([]);
    const config = parseConfig({ GC_UPLOAD_MAX_AGE: String(30 * 24 * 3600) });
    expect(config.gc.uploadMaxAgeMs).toBe(7 * 24 * 3600 * 1000);
    expect(config.warnings).toEqual([expect.stringMatching(/GC_UPLOAD_MAX_AGE of 2592000 seconds is longer than the 7 days .*; using 604800/)]);
  });

  it("the test environment's own settings are within them", () => {
    expect(parseConfig(env as never).warnings).toEqual([]);
  });
});
