/**
 * Addresses of the UI's pages (in the URL's fragment, so the Worker serves one page), paging of
 * the registry's listings, and what the UI remembers between pages.
 *
 *   #/                          repositories (`?q=` filter, `?after=` page)
 *   #/r/<name>                  a repository's tags (`?sort=newest`, `?after=` or `?page=`)
 *   #/r/<name>:<tag>            an image, index or artifact by tag
 *   #/r/<name>@<digest>         … by digest
 *   #/signin                    the sign-in form (`?next=` the page to go back to)
 */
import { rightsOn, type Page, type Rights } from "./api.js";
import { h } from "./dom.js";

/** The page asked for: its path and query. */
export interface Place {
  path: string;
  query: URLSearchParams;
}

/** Where the fragment points. */
export function currentPlace(): Place {
  const hash = location.hash.replace(/^#/, "") || "/";
  const mark = hash.indexOf("?");
  const raw = mark < 0 ? hash : hash.slice(0, mark);
  let path = raw;
  try {
    path = decodeURIComponent(raw);
  } catch {
    // Not percent-encoded properly: taken as it is.
  }
  return { path, query: new URLSearchParams(mark < 0 ? "" : hash.slice(mark + 1)) };
}

/** A fragment address with a query (empty values left out). */
export function address(path: string, query: Record<string, string | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value) params.set(key, value);
  const text = params.toString();
  return `#${path}${text ? `?${text}` : ""}`;
}

/** A repository, tag or digest parsed from `#/r/<name>[:<tag>|@<digest>]`. */
export interface Reference {
  name: string;
  tag?: string;
  digest?: string;
}

/** Parses `<name>`, `<name>:<tag>` or `<name>@<digest>` (names hold neither `:` nor `@`). */
export function parseReference(text: string): Reference {
  const at = text.indexOf("@");
  if (at >= 0) return { name: text.slice(0, at), digest: text.slice(at + 1) };
  const colon = text.lastIndexOf(":");
  if (colon >= 0) return { name: text.slice(0, colon), tag: text.slice(colon + 1) };
  return { name: text };
}

export const repositoryHref = (name: string) => `#/r/${name}`;
export const tagHref = (name: string, tag: string) => `#/r/${name}:${tag}`;
export const digestHref = (name: string, digest: string) => `#/r/${name}@${digest}`;

/** The registry's host as clients name it (`docker pull <host>/<name>`). */
export const host = location.host;

/** Rights per repository, asked once per sign-in. */
const rights = new Map<string, Promise<Rights>>();

/** Whether the signed-in principal may push to (and delete from) `name`. */
export function rightsFor(name: string): Promise<Rights> {
  let known = rights.get(name);
  if (!known) {
    known = rightsOn(name);
    rights.set(name, known);
    known.catch(() => rights.delete(name));
  }
  return known;
}

/** Forgets what was learnt about the signed-in principal. */
export function forgetRights(): void {
  rights.clear();
}

/** Items per page. */
export const PAGE = 50;

/**
 * One page of a listing that pages with `n`/`last`, filtered by a substring: reads the registry's
 * pages (larger ones while filtering) until `PAGE` items match or the listing ends (at most 20
 * reads). `next` is where the following page starts, when there may be one.
 */
export async function scan(
  fetchPage: (n: number, last: string | undefined) => Promise<Page>,
  after: string | undefined,
  filter: string,
): Promise<{ items: string[]; next?: string }> {
  const items: string[] = [];
  let last = after;
  for (let reads = 0; reads < 20; reads++) {
    const page = await fetchPage(filter ? 1000 : PAGE, last);
    for (let i = 0; i < page.items.length; i++) {
      const item = page.items[i]!;
      if (filter && !item.includes(filter)) continue;
      items.push(item);
      if (items.length === PAGE) {
        const more = i < page.items.length - 1 || page.next !== undefined;
        return more ? { items, next: item } : { items };
      }
    }
    if (!page.next) return { items };
    last = page.next;
  }
  return last ? { items, next: last } : { items };
}

/** Where earlier pages started, per listing, for "Previous". */
const starts = new Map<string, (string | undefined)[]>();

/**
 * Previous/next links of a listing paged by `after`. `key` names the listing; `at` is where the
 * current page starts; `go(after)` is the address of the page starting after `after`.
 */
export function pager(key: string, at: string | undefined, next: string | undefined, go: (after: string | undefined) => string): HTMLElement {
  const trail = starts.get(key) ?? [];
  // Coming back to an earlier page cuts the trail there.
  const index = trail.indexOf(at);
  if (index >= 0) trail.length = index;
  starts.set(key, trail);
  if (at === undefined && next === undefined) return h("nav", { class: "pager", hidden: true });
  const previous = at === undefined ? undefined : trail.length > 0 ? trail[trail.length - 1] : undefined;
  const link = (label: string, href: string | undefined, rel: string, onclick?: () => void) =>
    href === undefined ? h("span", { class: "disabled", "aria-disabled": "true" }, label) : h("a", { href, rel, onclick: onclick ?? null }, label);
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    link("« First", at === undefined ? undefined : go(undefined), "first"),
    link("‹ Previous", at === undefined ? undefined : go(previous), "prev"),
    link("Next ›", next === undefined ? undefined : go(next), "next", () => {
      trail.push(at);
    }),
  );
}
