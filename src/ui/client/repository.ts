/**
 * A repository's page: its tags (by name, paged by the registry; or newest first, which reads
 * every tag's push time), each with its digest, type, size, platforms and push time, and, for a
 * principal that may push, tag deletion and garbage collection.
 */
import * as api from "./api.js";
import { collectPanel, deleteTag } from "./actions.js";
import { digestCell, fill, h, limiter, row, size, when, type Child } from "./dom.js";
import { address, pager, PAGE, rightsFor, scan, tagHref, type Place } from "./nav.js";
import { describe } from "./shell.js";

/** What the tags table shows of one tag. */
interface Summary {
  manifest: api.Manifest;
  kind: api.ManifestKind;
  /** Bytes a pull downloads: config and layers (for an index, of every platform, each blob once). */
  size?: number;
  platforms: string[];
}

/** `os/architecture[/variant]` of an index entry (attestations say so). */
export function platformOf(descriptor: api.Descriptor): string {
  if (descriptor.annotations?.["vnd.docker.reference.type"] === "attestation-manifest") return "attestation";
  const p = descriptor.platform;
  if (!p) return "unknown";
  return [p.os ?? "?", p.architecture ?? "?", p.variant].filter(Boolean).join("/");
}

/** The blobs an image or artifact manifest references (config and layers). */
export function blobsOf(body: api.ManifestBody): api.Descriptor[] {
  return [body.config, ...(body.layers ?? [])].filter((d): d is api.Descriptor => d !== undefined && typeof d.size === "number");
}

/** Reads a manifest and, for an index, its platforms' manifests, to say what a pull costs. */
export async function summarize(name: string, reference: string, signal?: AbortSignal): Promise<Summary> {
  const manifest = await api.manifest(name, reference, signal);
  const kind = api.kindOf(manifest.body);
  if (kind !== "index") {
    const blobs = blobsOf(manifest.body);
    return { manifest, kind, platforms: [], ...(kind === "schema1" ? {} : { size: blobs.reduce((sum, d) => sum + d.size, 0) }) };
  }
  const children = manifest.body.manifests ?? [];
  const unique = new Map<string, number>();
  let complete = true;
  await Promise.all(
    children.map(async (child) => {
      try {
        const body = (await api.manifest(name, child.digest, signal)).body;
        for (const blob of blobsOf(body)) unique.set(blob.digest, blob.size);
      } catch {
        complete = false;
      }
    }),
  );
  const total = [...unique.values()].reduce((sum, n) => sum + n, 0);
  return { manifest, kind, platforms: children.map(platformOf), ...(complete ? { size: total } : {}) };
}

const KIND_LABELS: Record<api.ManifestKind, string> = { image: "image", index: "index", artifact: "artifact", schema1: "schema 1" };

/** The type column: what it is, and its media type (an artifact's type too). */
export function typeCell(summary: Summary): Child {
  const body = summary.manifest.body;
  return [
    h("span", { class: `kind kind-${summary.kind}` }, KIND_LABELS[summary.kind]),
    " ",
    h("code", { class: "media-type" }, body.artifactType ?? summary.manifest.mediaType),
  ];
}

const HEADERS = ["Tag", "Digest", "Type", "Size", "Platforms", "Pushed", ""];

/** Draws a repository's page; throws the tag listing's failure. */
export async function drawRepository(main: HTMLElement, place: Place, name: string, signal: AbortSignal): Promise<void> {
  const newest = place.query.get("sort") === "newest";
  const filter = place.query.get("q") ?? "";
  const sort = h(
    "select",
    { id: "sort" },
    h("option", { value: "name", selected: !newest }, "by name"),
    h("option", { value: "newest", selected: newest }, "newest first"),
  );
  sort.addEventListener("change", () => (location.hash = address(`/r/${name}`, { sort: sort.value === "newest" ? "newest" : undefined, q: filter })));
  const filterBox = h("input", { type: "search", id: "tag-filter", value: filter, placeholder: "part of a tag", autocomplete: "off" });
  filterBox.addEventListener("change", () => (location.hash = address(`/r/${name}`, { sort: newest ? "newest" : undefined, q: filterBox.value.trim() })));
  const listing = h("div", { id: "tags" }, h("p", { class: "loading" }, "Loading tags…"));
  const maintenance = h("div", { id: "maintenance" });
  fill(
    main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "Repositories"), " / "),
    h("h1", { tabindex: -1 }, name),
    h(
      "form",
      { class: "filter", onsubmit: (event) => event.preventDefault() },
      h("label", { for: "sort" }, "Sort"),
      sort,
      h("label", { for: "tag-filter" }, "Filter"),
      filterBox,
    ),
    listing,
    maintenance,
  );

  let mayPush = false;
  const actionCells: [HTMLElement, string, () => string | undefined][] = [];
  const addDelete = (cell: HTMLElement, tag: string, digest: () => string | undefined) => {
    const button = h("button", { type: "button", class: "danger small", "aria-label": `Delete tag ${tag}` }, "Delete");
    button.addEventListener("click", async () => {
      if (await deleteTag(name, tag, digest())) button.closest("tr")?.remove();
    });
    fill(cell, button);
  };
  rightsFor(name).then(
    (rights) => {
      if (signal.aborted) return;
      fill(maintenance, rights.push ? collectPanel(name) : h("p", { class: "muted", id: "read-only" }, rights.why));
      mayPush = rights.push;
      if (mayPush) for (const [cell, tag, digest] of actionCells) addDelete(cell, tag, digest);
    },
    (failure: unknown) => fill(maintenance, h("p", { class: "error" }, describe(failure))),
  );

  const run = limiter(6);
  /** A row for `tag`, filled in as its manifest arrives. */
  const tagRow = (tag: string, known?: Promise<Summary>): HTMLTableRowElement => {
    const cells: HTMLElement[] = HEADERS.map((_, i) => h("span", null, i > 0 && i < 6 ? "…" : ""));
    cells[0] = h("a", { href: tagHref(name, tag) }, tag);
    let digest: string | undefined;
    if (mayPush) addDelete(cells[6]!, tag, () => digest);
    else actionCells.push([cells[6]!, tag, () => digest]);
    const tr = row(HEADERS, cells);
    tr.dataset.tag = tag;
    (known ?? run(() => summarize(name, tag, signal))).then(
      (summary) => {
        digest = summary.manifest.digest;
        fill(cells[1]!, digestCell(summary.manifest.digest));
        fill(cells[2]!, typeCell(summary));
        fill(cells[3]!, size(summary.size));
        fill(cells[4]!, summary.platforms.join(", ") || "–");
        fill(cells[5]!, when(summary.manifest.modified));
      },
      (failure: unknown) => {
        if (!signal.aborted) fill(cells[1]!, h("span", { class: "error" }, describe(failure)));
      },
    );
    return tr;
  };
  const tableOf = (rows: HTMLTableRowElement[]) =>
    h(
      "table",
      null,
      h("caption", { class: "visually-hidden" }, `Tags of ${name}`),
      h("thead", null, h("tr", null, HEADERS.map((label) => h("th", { scope: "col" }, label || h("span", { class: "visually-hidden" }, "Actions"))))),
      h("tbody", null, rows),
    );
  const empty = () => h("p", { class: "empty" }, filter ? `No tag contains “${filter}”.` : "No tags: the repository holds only untagged manifests, or nothing.");

  if (!newest) {
    const after = place.query.get("after") ?? undefined;
    const page = await scan((n, last) => api.tags(name, n, last, signal), after, filter);
    if (signal.aborted) return;
    fill(
      listing,
      page.items.length ? tableOf(page.items.map((tag) => tagRow(tag))) : empty(),
      pager(`tags:${name}:${filter}`, after, page.next, (start) => address(`/r/${name}`, { q: filter, after: start })),
    );
    return;
  }

  // Newest first: every tag's push time is needed before the first page can be drawn.
  const { tags, more } = await api.allTags(name, signal, 1000);
  const wanted = tags.filter((tag) => tag.includes(filter));
  let done = 0;
  const progress = h("p", { class: "loading" }, `Reading the push times of ${wanted.length} tags…`);
  fill(listing, progress);
  const summaries = new Map<string, Promise<Summary>>();
  const times = new Map<string, number>();
  await Promise.all(
    wanted.map((tag) => {
      const summary = run(() => summarize(name, tag, signal));
      summaries.set(tag, summary);
      return summary.then(
        (s) => {
          times.set(tag, s.manifest.modified?.getTime() ?? 0);
          progress.textContent = `Reading the push times of ${wanted.length} tags… ${++done} read`;
        },
        () => times.set(tag, 0),
      );
    }),
  );
  if (signal.aborted) return;
  wanted.sort((a, b) => (times.get(b) ?? 0) - (times.get(a) ?? 0) || (a < b ? -1 : 1));
  const pages = Math.max(1, Math.ceil(wanted.length / PAGE));
  const number = Math.min(pages, Math.max(1, Number(place.query.get("page")) || 1));
  const shown = wanted.slice((number - 1) * PAGE, number * PAGE);
  const goTo = (n: number) => address(`/r/${name}`, { sort: "newest", q: filter, page: n > 1 ? String(n) : undefined });
  fill(
    listing,
    more ? h("p", { class: "muted" }, "Sorted among the first 1,000 tags (by name); the repository has more.") : null,
    shown.length ? tableOf(shown.map((tag) => tagRow(tag, summaries.get(tag)))) : empty(),
    h(
      "nav",
      { class: "pager", "aria-label": "Pages" },
      number > 1 ? h("a", { href: goTo(number - 1), rel: "prev" }, "‹ Previous") : h("span", { class: "disabled" }, "‹ Previous"),
      h("span", null, `page ${number} of ${pages}`),
      number < pages ? h("a", { href: goTo(number + 1), rel: "next" }, "Next ›") : h("span", { class: "disabled" }, "Next ›"),
    ),
  );
}
