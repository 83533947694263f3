/**
 * What a principal that may push can do from the UI: delete a tag, delete a manifest by digest
 * (after saying what else goes), and run a repository's garbage collection, dry or for real.
 * Every refusal is shown in the registry's words.
 */
import * as api from "./api.js";
import { bytes, confirmAction, digestCell, h, fill, limiter, notify, size, table, type Child } from "./dom.js";
import { describe } from "./shell.js";

/** Asks, then deletes tag `tag` of `name`; true when it is gone. */
export async function deleteTag(name: string, tag: string, digest: string | undefined): Promise<boolean> {
  const confirmed = await confirmAction(
    `Delete tag ${tag}?`,
    [
      h("p", null, "The tag ", h("code", null, `${name}:${tag}`), " is removed."),
      h(
        "p",
        null,
        "The manifest it points at",
        digest ? [" (", h("code", null, digest), ")"] : "",
        " stays, under its digest and any other tags; a garbage collection in mode untagged removes it once no tag reaches it.",
      ),
    ],
    "Delete tag",
  );
  if (!confirmed) return false;
  try {
    await api.deleteManifest(name, tag);
    notify(`Deleted tag ${name}:${tag}.`);
    return true;
  } catch (failure) {
    notify(describe(failure), "error");
    return false;
  }
}

/** Tags of `name` that point at `digest` (reads every tag's digest, up to 1,000 tags). */
async function tagsPointingAt(name: string, digest: string): Promise<{ tags: string[]; more: boolean }> {
  const { tags, more } = await api.allTags(name, undefined, 1000);
  const run = limiter(6);
  const found: string[] = [];
  await Promise.all(
    tags.map((tag) =>
      run(async () => {
        if ((await api.digestOf(name, tag).catch(() => undefined)) === digest) found.push(tag);
      }),
    ),
  );
  return { tags: found.sort(), more };
}

/** What else a manifest deletion leaves behind, as the page knows it. */
export interface Dependents {
  /** Platform manifests of an index. */
  children: number;
  /** Referrers (signatures, SBOMs, attestations) of the manifest, when known. */
  referrers?: number;
}

/** Asks (saying which tags go with it), then deletes manifest `digest` of `name`; true when it is gone. */
export async function deleteDigest(name: string, digest: string, dependents: Dependents, button: HTMLButtonElement): Promise<boolean> {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Checking tags…";
  let pointing: { tags: string[]; more: boolean };
  try {
    pointing = await tagsPointingAt(name, digest);
  } catch (failure) {
    notify(describe(failure), "error");
    return false;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
  const tagList: Child = pointing.tags.length
    ? [`, and with it ${pointing.tags.length === 1 ? "its tag" : `its ${pointing.tags.length} tags`} `, pointing.tags.map((tag, i) => [i ? ", " : "", h("code", null, tag)]), pointing.more ? " (among the first 1,000 tags)" : ""]
    : ", and no tag (none points at it)";
  const confirmed = await confirmAction(
    "Delete this manifest?",
    [
      h("p", null, "The manifest ", h("code", null, digest), ` goes from ${name}`, tagList, "."),
      dependents.children > 0
        ? h("p", null, `Its ${dependents.children} platform manifests stay under their digests until a garbage collection in mode untagged removes them.`)
        : null,
      dependents.referrers
        ? h("p", null, `${dependents.referrers} referrers (signatures, SBOMs, attestations) of it stay, pointing at nothing, until a garbage collection in mode untagged removes them.`)
        : null,
      h("p", null, "Its config and layers stay until a garbage collection frees them. This cannot be undone."),
    ],
    "Delete manifest",
  );
  if (!confirmed) return false;
  try {
    await api.deleteManifest(name, digest);
    const tagged = pointing.tags.length === 1 ? ` and its tag ${pointing.tags[0]}` : pointing.tags.length ? ` and its tags ${pointing.tags.join(", ")}` : "";
    notify(`Deleted manifest ${digest}${tagged}.`);
    return true;
  } catch (failure) {
    notify(describe(failure), "error");
    return false;
  }
}

const MODES: Record<string, string> = {
  unreferenced: "Blobs no manifest of the repository references.",
  untagged: "Manifests no tag reaches (nor an index or subject that is reached), then the blobs only they used.",
};

/** What a collection deleted (or would delete). */
function report(result: api.CollectReport): HTMLElement {
  const freed = result.dryRun
    ? `Dry run (${result.mode}): would delete ${result.manifests.length} manifests and ${result.blobs.length} blobs, freeing ${bytes(result.bytes)}.`
    : `Collected (${result.mode}): deleted ${result.manifests.length} manifests and ${result.blobs.length} blobs, freeing ${bytes(result.bytes)}.`;
  return h(
    "div",
    null,
    h("p", { class: "gc-summary" }, freed),
    result.manifests.length
      ? table(
          "Manifests",
          ["Manifest", "Tags", "Size"],
          result.manifests.map((m) => [digestCell(m.digest), m.tags.join(", ") || "none", size(m.size)]),
        )
      : null,
    result.blobs.length ? table("Blobs", ["Blob", "Kind", "Size"], result.blobs.map((b) => [digestCell(b.digest), b.kind, size(b.size)])) : null,
    result.shared?.length ? h("p", null, `${result.shared.length} unreferenced blobs are kept: other repositories use their bytes.`) : null,
  );
}

/** The garbage-collection panel of a repository: mode, grace period, dry run and run. */
export function collectPanel(name: string): HTMLElement {
  const mode = h(
    "select",
    { id: "gc-mode" },
    Object.keys(MODES).map((value) => h("option", { value }, value)),
  );
  const explain = h("p", { class: "muted", id: "gc-mode-help" }, MODES.unreferenced);
  mode.setAttribute("aria-describedby", "gc-mode-help");
  mode.addEventListener("change", () => (explain.textContent = MODES[mode.value] ?? ""));
  const grace = h("input", { id: "gc-grace", type: "number", min: 0, step: 1, inputmode: "numeric", placeholder: "registry default" });
  const output = h("div", { class: "gc-result", "aria-live": "polite" });
  const dry = h("button", { type: "button", id: "gc-dry-run" }, "Dry run");
  const run = h("button", { type: "button", id: "gc-run", class: "danger" }, "Collect garbage");
  const graceSeconds = () => (grace.value === "" ? undefined : Math.max(0, Math.floor(Number(grace.value))));
  const collect = async (dryRun: boolean) => {
    if (!dryRun) {
      const confirmed = await confirmAction(
        `Collect garbage in ${name}?`,
        [h("p", null, `Mode ${mode.value}: ${MODES[mode.value]}`), h("p", null, "What it deletes cannot be brought back; a dry run lists it first.")],
        "Collect garbage",
      );
      if (!confirmed) return;
    }
    dry.disabled = run.disabled = true;
    fill(output, h("p", { class: "loading" }, dryRun ? "Looking for garbage…" : "Collecting…"));
    try {
      fill(output, report(await api.collect(name, mode.value, dryRun, graceSeconds())));
    } catch (failure) {
      fill(output, h("p", { class: "error", role: "alert" }, describe(failure)));
    } finally {
      dry.disabled = run.disabled = false;
    }
  };
  dry.addEventListener("click", () => void collect(true));
  run.addEventListener("click", () => void collect(false));
  return h(
    "section",
    { class: "panel", "aria-labelledby": "gc-title" },
    h("h2", { id: "gc-title" }, "Garbage collection"),
    h(
      "div",
      { class: "gc-form" },
      h("label", { for: "gc-mode" }, "Mode"),
      mode,
      h("label", { for: "gc-grace" }, "Keep what is newer than (seconds)"),
      grace,
    ),
    explain,
    h("div", { class: "actions" }, dry, run),
    output,
  );
}
