/** The repositories page: `GET /v2/_catalog` page by page, a filter box, and each one's tag count. */
import * as api from "./api.js";
import { fill, h, limiter, table } from "./dom.js";
import { address, host, pager, repositoryHref, scan, type Place } from "./nav.js";
import { describe } from "./shell.js";

/** Counts a repository's tags (every page of `tags/list`, up to 10,000). */
async function countTags(name: string, cell: HTMLElement, signal: AbortSignal): Promise<void> {
  try {
    const { tags, more } = await api.allTags(name, signal, 10_000);
    cell.textContent = more ? `${tags.length}+` : String(tags.length);
  } catch (failure) {
    if (signal.aborted) return;
    cell.textContent = "?";
    cell.title = describe(failure);
  }
}

/** Draws the repositories page; throws the first page's failure (e.g. signed out). */
export async function drawCatalog(main: HTMLElement, place: Place, signal: AbortSignal): Promise<void> {
  let filter = place.query.get("q") ?? "";
  const input = h("input", { type: "search", id: "filter", value: filter, placeholder: "part of a name", autocomplete: "off", "aria-controls": "repositories" });
  const results = h("div", { id: "repositories" }, h("p", { class: "loading" }, "Loading repositories…"));
  fill(
    main,
    h("h1", { tabindex: -1 }, "Repositories"),
    h("form", { class: "filter", role: "search", onsubmit: (event) => event.preventDefault() }, h("label", { for: "filter" }, "Filter"), input),
    results,
  );

  let current: AbortController | undefined;
  const load = async (after: string | undefined) => {
    current?.abort();
    current = new AbortController();
    const stop = AbortSignal.any([signal, current.signal]);
    const page = await scan((n, last) => api.catalog(n, last, stop), after, filter);
    if (stop.aborted) return;
    const counts = page.items.map(() => h("span", { class: "muted" }, "…"));
    fill(
      results,
      page.items.length
        ? table(
            "Repositories",
            ["Repository", "Tags"],
            page.items.map((name, i) => [h("a", { href: repositoryHref(name) }, name), counts[i]]),
          )
        : h(
            "p",
            { class: "empty" },
            filter ? `No repository name contains “${filter}”.` : ["No repositories yet. Push one: ", h("code", null, `docker push ${host}/<name>:<tag>`)],
          ),
      pager(`catalog:${filter}`, after, page.next, (start) => address("/", { q: filter, after: start })),
    );
    const run = limiter(4);
    page.items.forEach((name, i) => void run(() => countTags(name, counts[i]!, stop)));
  };

  let timer: ReturnType<typeof setTimeout> | undefined;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      filter = input.value.trim();
      // The address follows the filter without drawing the page again (the box keeps its focus).
      history.replaceState(null, "", address("/", { q: filter }));
      load(undefined).catch((failure: unknown) => {
        if (!signal.aborted) fill(results, h("p", { class: "error", role: "alert" }, describe(failure)));
      });
    }, 250);
  });
  await load(place.query.get("after") ?? undefined);
}
