/**
 * The web UI of r2-registry: a page served by the Worker at `/ui/` that talks only to the
 * registry's own `/v2/` API. This module draws the page the address's fragment names (see
 * nav.ts) and draws it again when the fragment changes.
 */
import { drawCatalog } from "./catalog.js";
import { clearNotice, fill, h } from "./dom.js";
import { drawManifest } from "./manifest.js";
import { currentPlace, parseReference } from "./nav.js";
import { drawRepository } from "./repository.js";
import { drawHeader, drawProblem, drawSignIn } from "./shell.js";

const main = document.getElementById("app") as HTMLElement;
let drawing: AbortController | undefined;
let drawn = false;

async function draw(): Promise<void> {
  drawing?.abort();
  const controller = new AbortController();
  drawing = controller;
  const { signal } = controller;
  clearNotice();
  drawHeader();
  const place = currentPlace();
  fill(main, h("p", { class: "loading" }, "Loading…"));
  let view: Promise<void>;
  if (place.path === "/") view = drawCatalog(main, place, signal);
  else if (place.path === "/signin") view = Promise.resolve(drawSignIn(main, place.query.get("next") ?? "#/"));
  else if (place.path.startsWith("/r/") && place.path.length > 3) {
    const ref = parseReference(place.path.slice(3));
    view = ref.tag !== undefined || ref.digest !== undefined ? drawManifest(main, ref, signal) : drawRepository(main, place, ref.name, signal);
  } else view = Promise.reject(new Error(`There is no page ${place.path} here.`));
  // The heading of a page opened from another one takes the focus (screen readers announce it).
  if (drawn) main.querySelector("h1")?.focus({ preventScroll: true });
  drawn = true;
  try {
    await view;
  } catch (failure) {
    if (signal.aborted) return;
    drawProblem(main, failure);
    main.querySelector("h1")?.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", () => void draw());
document.addEventListener("r2-ui:redraw", () => void draw());
// "/" jumps to the page's filter box, as on many sites.
document.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement | null;
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  const filter = document.querySelector<HTMLInputElement>("input[type=search]");
  if (filter) {
    event.preventDefault();
    filter.focus();
  }
});
void draw();
