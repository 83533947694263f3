import { mayAccess } from "../auth";
import { RegistryError } from "../errors";
import { linkNext, parsePage } from "../http";
import type { Page } from "../registry/registry";
import { nameParam, type Handler } from "./context";

/** Largest page a listing returns. */
export const MAX_PAGE = 1000;

/** The response of a listing; the next page (if `page.more`) starts after `after`. */
function pageResponse(url: URL, n: number, page: Page<string>, body: object, after: string | undefined): Response {
  const text = JSON.stringify(body);
  const headers = new Headers({ "Content-Type": "application/json; charset=utf-8" });
  if (page.more) headers.set("Link", linkNext(url, n, after));
  return new Response(text, { status: 200, headers });
}

/**
 * `GET /v2/<name>/tags/list?n=&last=`: tags in lexical order, up to 1,000 a page, with a
 * `Link: <…>; rel="next"` header when more remain.
 *
 * @example
 * curl -u user:pass 'https://registry.example/v2/foo/tags/list?n=2'
 * # Link: </v2/foo/tags/list?n=2&last=v2>; rel="next"
 */
export const listTags: Handler = async (request, { registry, url }) => {
  const name = nameParam(request);
  const { n, last } = parsePage(url, { defaultN: MAX_PAGE, max: MAX_PAGE });
  const page = await registry.listTags(name, { n, last });
  if (!page) throw new RegistryError("NAME_UNKNOWN", `repository ${name} is not known to this registry`, { detail: { name } });
  return pageResponse(url, n, page, { name, tags: page.items }, page.items[page.items.length - 1]);
};

/** `GET /v2/_catalog?n=&last=`: repository names in lexical order, paginated like tags. */
export const listRepositories: Handler = async (_request, { registry, url, principal }) => {
  const { n, last } = parsePage(url, { defaultN: MAX_PAGE, max: MAX_PAGE });
  const page = await registry.listRepositories({ n, last });
  // The next page starts after the last name of this one; a page may have none yet more follow
  // (the catalog of an older bucket being indexed): the next then starts where this one did.
  const after = page.items[page.items.length - 1] ?? last;
  // A token limited to some repositories sees only those (pages may then be shorter than n).
  if (principal.repositories) page.items = page.items.filter((name) => mayAccess(principal, "pull", name));
  return pageResponse(url, n, page, { repositories: page.items }, after);
};
