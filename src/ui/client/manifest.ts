/**
 * An image, index or artifact, by tag or digest: what it is made of (platforms; config, layers
 * and history; an artifact's blobs), what it weighs, its referrers, the commands that pull it,
 * and, for a principal that may push, deleting its tag or the manifest itself.
 */
import * as api from "./api.js";
import { deleteDigest, deleteTag } from "./actions.js";
import { command, digestCell, facts, fill, h, limiter, pairs, shortDigest, size, table, when, type Child } from "./dom.js";
import { digestHref, host, repositoryHref, rightsFor, type Reference } from "./nav.js";
import { blobsOf, platformOf, summarize, typeCell } from "./repository.js";
import { describe, go } from "./shell.js";

const section = (id: string, title: string, ...children: Child[]) =>
  h("section", { class: "panel", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), children);

/** A command line from an image config's entrypoint or cmd. */
function argv(values: string[] | null | undefined): Child {
  if (!values?.length) return undefined;
  return h("code", null, JSON.stringify(values));
}

/** The platforms of an index, each openable, with its size once known. */
function platforms(name: string, body: api.ManifestBody, signal: AbortSignal): HTMLElement {
  const children = body.manifests ?? [];
  const sizes = children.map(() => h("span", { class: "muted" }, "…"));
  const run = limiter(4);
  children.forEach((child, i) =>
    void run(() => summarize(name, child.digest, signal)).then(
      (summary) => fill(sizes[i]!, size(summary.size)),
      (failure: unknown) => fill(sizes[i]!, h("span", { class: "error" }, describe(failure))),
    ),
  );
  return section(
    "platforms",
    `Platforms (${children.length})`,
    table(
      "Platforms",
      ["Platform", "Manifest", "Size", "Media type"],
      children.map((child, i) => [
        h("a", { href: digestHref(name, child.digest) }, platformOf(child)),
        digestCell(child.digest, digestHref(name, child.digest)),
        sizes[i],
        h("code", { class: "media-type" }, child.artifactType ?? child.mediaType ?? ""),
      ]),
    ),
  );
}

/** Config, layers and history of an image (the config is fetched). */
async function image(name: string, body: api.ManifestBody, signal: AbortSignal): Promise<HTMLElement[]> {
  const layers = body.layers ?? [];
  let config: api.ImageConfig | undefined;
  let problem = "";
  try {
    if (body.config) config = await api.configOf(name, body.config, signal);
  } catch (failure) {
    problem = describe(failure);
  }
  const history = config?.history ?? [];
  // History entries that made a layer, in layer order.
  const made = history.filter((entry) => !entry.empty_layer);
  const settings = config?.config ?? {};
  const total = blobsOf(body).reduce((sum, d) => sum + d.size, 0);
  return [
    section(
      "config",
      "Config",
      problem ? h("p", { class: "error" }, `The config could not be read: ${problem}`) : null,
      facts([
        ["Created", config?.created ? [when(config.created), " ", h("span", { class: "muted" }, `(${config.created})`)] : undefined],
        ["Platform", config ? [config.os, config.architecture, config.variant].filter(Boolean).join("/") : undefined],
        ["Entrypoint", argv(settings.Entrypoint)],
        ["Cmd", argv(settings.Cmd)],
        ["Working dir", settings.WorkingDir ? h("code", null, settings.WorkingDir) : undefined],
        ["User", settings.User ? h("code", null, settings.User) : undefined],
        ["Ports", settings.ExposedPorts ? Object.keys(settings.ExposedPorts).join(", ") : undefined],
        ["Author", config?.author],
        ["Config", body.config ? digestCell(body.config.digest) : undefined],
      ]),
      h("h3", null, "Labels"),
      pairs(settings.Labels),
    ),
    section(
      "layers",
      `Layers (${layers.length}, ${size(total).textContent} with the config)`,
      table(
        "Layers",
        ["#", "Size", "Digest", "Media type", "Created by"],
        layers.map((layer, i) => [
          String(i + 1),
          size(layer.size),
          digestCell(layer.digest),
          h("code", { class: "media-type" }, layer.mediaType ?? ""),
          made[i]?.created_by ? h("code", { class: "created-by" }, made[i].created_by) : "",
        ]),
      ),
    ),
    section(
      "history",
      `History (${history.length})`,
      history.length
        ? table(
            "History",
            ["Created", "Step", "Layer"],
            history.map((entry) => [
              entry.created ? when(entry.created) : "–",
              h("code", { class: "created-by" }, entry.created_by ?? entry.comment ?? ""),
              entry.empty_layer ? "none" : "yes",
            ]),
          )
        : h("p", { class: "muted" }, "The config records no history."),
    ),
  ];
}

/** The blobs of an artifact (a signature's payload, an SBOM…). */
function artifact(body: api.ManifestBody): HTMLElement {
  const layers = body.layers ?? [];
  return section(
    "blobs",
    `Blobs (${layers.length})`,
    facts([["Config type", body.config?.mediaType ? h("code", null, body.config.mediaType) : undefined]]),
    layers.length
      ? table(
          "Blobs",
          ["Title", "Media type", "Size", "Digest"],
          layers.map((layer) => [
            layer.annotations?.["org.opencontainers.image.title"] ?? "–",
            h("code", { class: "media-type" }, layer.mediaType ?? ""),
            size(layer.size),
            digestCell(layer.digest),
          ]),
        )
      : h("p", { class: "muted" }, "No blobs."),
  );
}

/** The manifests whose subject this one is (`GET /v2/<name>/referrers/<digest>`), each openable. */
async function referrers(name: string, digest: string, signal: AbortSignal, found: (n: number) => void): Promise<HTMLElement> {
  let list: api.Descriptor[];
  try {
    list = await api.referrers(name, digest, signal);
  } catch (failure) {
    return section("referrers", "Referrers", h("p", { class: "error" }, describe(failure)));
  }
  found(list.length);
  return section(
    "referrers",
    `Referrers (${list.length})`,
    list.length
      ? table(
          "Referrers",
          ["Artifact type", "Manifest", "Size", "Annotations"],
          list.map((d) => [
            h("a", { href: digestHref(name, d.digest) }, d.artifactType ?? d.mediaType ?? "unknown"),
            digestCell(d.digest, digestHref(name, d.digest)),
            size(d.size),
            pairs(d.annotations),
          ]),
        )
      : h("p", { class: "muted" }, "No signatures, SBOMs or other artifacts refer to this manifest."),
  );
}

/** Draws a manifest's page; throws when the manifest cannot be read. */
export async function drawManifest(main: HTMLElement, ref: Reference, signal: AbortSignal): Promise<void> {
  const { name } = ref;
  const reference = ref.tag ?? ref.digest ?? "";
  const heading = h("h1", { tabindex: -1 }, ref.tag ? `${name}:${ref.tag}` : `${name}@${shortDigest(reference)}`);
  const crumbs = h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    h("a", { href: "#/" }, "Repositories"),
    " / ",
    h("a", { href: repositoryHref(name) }, name),
    " / ",
  );
  fill(main, crumbs, heading, h("p", { class: "loading" }, "Loading the manifest…"));
  const manifest = await api.manifest(name, reference, signal);
  const { body, digest } = manifest;
  const kind = api.kindOf(body);
  const total = kind === "index" ? undefined : blobsOf(body).reduce((sum, d) => sum + d.size, 0);
  const actions = h("div", { class: "actions", id: "manifest-actions" });
  const referrersPanel = h("div", null, h("p", { class: "loading" }, "Looking for referrers…"));
  const dependents = { children: body.manifests?.length ?? 0, referrers: undefined as number | undefined };
  const details: Child[] =
    kind === "index" ? [platforms(name, body, signal)] : kind === "artifact" ? [artifact(body)] : kind === "schema1" ? [section("layers", "Layers", h("p", null, "A Docker schema 1 manifest (deprecated): see its JSON below."))] : [h("p", { class: "loading" }, "Loading the config…")];

  const detailsPanel = h("div", { id: "details" }, details);
  const indexSize = h("span", { class: "muted" }, "…");
  if (kind === "index") {
    summarize(name, digest, signal).then(
      (summary) => fill(indexSize, size(summary.size), h("span", { class: "muted" }, " (every platform's config and layers, each blob once)")),
      (failure: unknown) => fill(indexSize, describe(failure)),
    );
  }
  fill(
    main,
    crumbs,
    heading,
    facts([
      ["Type", typeCell({ manifest, kind, platforms: [] })],
      ["Digest", digestCell(digest)],
      [
        "Pushed",
        manifest.modified
          ? [when(manifest.modified), " ", h("span", { class: "muted" }, `(when it was stored under this ${ref.tag ? "tag" : "digest"}: the registry's Last-Modified)`)]
          : undefined,
      ],
      ["Size", total !== undefined ? [size(total), h("span", { class: "muted" }, kind === "artifact" ? " (config and blobs)" : " (config and layers, compressed)")] : kind === "index" ? indexSize : undefined],
      ["Subject", body.subject ? [h("a", { href: digestHref(name, body.subject.digest), id: "subject" }, "open the manifest this one refers to"), " ", digestCell(body.subject.digest)] : undefined],
      ["Annotations", body.annotations && Object.keys(body.annotations).length ? pairs(body.annotations) : undefined],
    ]),
    section(
      "pull",
      "Pull",
      ref.tag ? command(`docker pull ${host}/${name}:${ref.tag}`) : null,
      command(`docker pull ${host}/${name}@${digest}`),
    ),
    actions,
    detailsPanel,
    referrersPanel,
    h("details", { class: "raw" }, h("summary", null, `Manifest JSON (${manifest.size} bytes)`), h("pre", null, h("code", null, JSON.stringify(body, null, 2)))),
  );

  rightsFor(name).then(
    (rights) => {
      if (signal.aborted) return;
      if (!rights.push) {
        fill(actions, h("p", { class: "muted", id: "read-only" }, rights.why));
        return;
      }
      const buttons: HTMLButtonElement[] = [];
      if (ref.tag) {
        const tag = ref.tag;
        buttons.push(
          h("button", { type: "button", class: "danger", id: "delete-tag", onclick: async () => (await deleteTag(name, tag, digest)) && go(repositoryHref(name)) }, `Delete tag ${tag}`),
        );
      }
      const byDigest = h("button", { type: "button", class: "danger", id: "delete-manifest" }, "Delete manifest");
      byDigest.addEventListener("click", async () => {
        if (await deleteDigest(name, digest, dependents, byDigest)) go(repositoryHref(name));
      });
      buttons.push(byDigest);
      fill(actions, buttons);
    },
    (failure: unknown) => fill(actions, h("p", { class: "error" }, describe(failure))),
  );

  const loading: Promise<void>[] = [
    referrers(name, digest, signal, (n) => (dependents.referrers = n)).then((panel) => fill(referrersPanel, panel)),
  ];
  if (kind === "image") loading.push(image(name, body, signal).then((sections) => fill(detailsPanel, sections)));
  await Promise.all(loading);
}
