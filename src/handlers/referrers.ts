import { linkNext, literalQueryParam, parsePage } from "../http";
import { MediaType } from "../oci/media-types";
import { digestParam, nameParam, type Handler } from "./context";

/** Largest page of referrers returned at once. */
const MAX_REFERRERS = 1000;

/**
 * `GET /v2/<name>/referrers/<digest>?artifactType=`: an OCI image index of the manifests whose
 * `subject` is that digest (an empty index when there are none), filtered by artifact type when
 * asked (`OCI-Filters-Applied: artifactType`), paginated with `n`/`last` and a `Link` header.
 *
 * @example
 * curl -u user:pass 'https://registry.example/v2/foo/referrers/sha256:…?artifactType=application/spdx+json'
 */
export const listReferrers: Handler = async (request, { registry, url }) => {
  const name = nameParam(request);
  const subject = digestParam(request);
  const { n, last } = parsePage(url, { defaultN: MAX_REFERRERS, max: MAX_REFERRERS });
  const artifactType = literalQueryParam(url, "artifactType");
  const page = await registry.listReferrers(name, subject.value, { n, last, artifactType });
  const headers = new Headers({ "Content-Type": MediaType.OCI_INDEX });
  if (artifactType !== undefined) headers.set("OCI-Filters-Applied", "artifactType");
  const lastItem = page.items[page.items.length - 1];
  if (page.more && lastItem) headers.set("Link", linkNext(url, n, lastItem.digest));
  const body = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: page.items });
  return new Response(body, { status: 200, headers });
};
