/**
 * DOM helpers of the web UI. Elements are built with `h()` and text nodes, never from HTML
 * strings (the page's Content-Security-Policy requires Trusted Types, so `innerHTML` would throw).
 */

export type Child = Node | string | number | null | undefined | false | readonly Child[];
type Attribute = string | number | boolean | null | undefined | ((event: Event) => void);

/** Appends children, skipping empty ones and flattening arrays. */
export function append(parent: Node, children: readonly Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child as readonly Child[]);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * An element with attributes (`onclick` and friends become listeners; `true` is an empty
 * attribute; `false`, `null` and `undefined` are left out) and children.
 *
 * @example
 * h("a", { href: "#/", class: "brand" }, "r2-registry")
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, Attribute> | null = null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** Replaces an element's children. */
export function fill(element: Element, ...children: Child[]): void {
  element.replaceChildren();
  append(element, children);
}

/** A byte count for people (binary units), e.g. `1.5 MiB`. */
export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A byte count with its exact number of bytes on hover. */
export function size(n: number | undefined): HTMLElement {
  return h("span", { title: n === undefined ? null : `${n.toLocaleString()} bytes` }, bytes(n));
}

/** `sha256:0123456789ab`: the algorithm and the first 12 hex digits. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(":");
  return colon < 0 ? digest.slice(0, 12) : digest.slice(0, colon + 13);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A `<time>`: how long ago, with the date and time on hover. */
export function when(date: Date | string | undefined): HTMLElement | string {
  const d = typeof date === "string" ? new Date(date) : date;
  if (!d || Number.isNaN(d.getTime())) return "–";
  const seconds = (d.getTime() - Date.now()) / 1000;
  const steps: [Intl.RelativeTimeFormatUnit, number][] = [
    ["second", 60],
    ["minute", 60],
    ["hour", 24],
    ["day", 30],
    ["month", 12],
    ["year", Infinity],
  ];
  let value = seconds;
  let text = "";
  for (const [unit, next] of steps) {
    if (Math.abs(value) < next) {
      text = relative.format(Math.round(value), unit);
      break;
    }
    value /= next;
  }
  return h("time", { datetime: d.toISOString(), title: absolute.format(d) }, text);
}

/** A button that copies `text` to the clipboard and says so. */
export function copyButton(text: string, label: string): HTMLButtonElement {
  const button = h("button", { type: "button", class: "copy", "aria-label": label, title: label }, "Copy");
  button.addEventListener("click", () => {
    const done = (ok: boolean) => {
      button.textContent = ok ? "Copied" : "Select and copy";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => done(true), () => done(false));
    else done(false);
  });
  return button;
}

/** A digest, short, with the whole digest on hover and a copy button. */
export function digestCell(digest: string, href?: string): HTMLElement {
  const label = shortDigest(digest);
  return h(
    "span",
    { class: "digest" },
    href ? h("a", { href, title: digest }, h("code", null, label)) : h("code", { title: digest }, label),
    " ",
    copyButton(digest, `Copy digest ${digest}`),
  );
}

/** A line of code to copy (a `docker pull` command). */
export function command(text: string): HTMLElement {
  return h("div", { class: "command" }, h("code", null, text), copyButton(text, `Copy ${text}`));
}

/** A table whose cells are labelled for the narrow (phone) layout, where each row becomes a card. */
export function table(caption: string, headers: readonly string[], rows: readonly (readonly Child[])[]): HTMLTableElement {
  return h(
    "table",
    null,
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", null, h("tr", null, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", null, rows.map((cells) => row(headers, cells))),
  );
}

/** A table row whose cells carry their column's name (shown as a label on phones). */
export function row(headers: readonly string[], cells: readonly Child[]): HTMLTableRowElement {
  // One element per cell, so that the phone layout's label and value are two grid items.
  return h("tr", null, cells.map((cell, i) => h("td", { "data-label": headers[i] ?? "" }, h("div", null, cell))));
}

/** A definition list of what is known (empty values are left out). */
export function facts(entries: readonly [string, Child][]): HTMLDListElement {
  return h(
    "dl",
    { class: "facts" },
    entries.filter(([, value]) => value !== undefined && value !== null && value !== "" && value !== false).map(([term, value]) => [h("dt", null, term), h("dd", null, value)]),
  );
}

/** A list of `key = value` pairs (labels, annotations). */
export function pairs(values: Record<string, string> | null | undefined): HTMLElement | string {
  const entries = Object.entries(values ?? {});
  if (entries.length === 0) return "none";
  return h("ul", { class: "pairs" }, entries.map(([key, value]) => h("li", null, h("code", null, key), " = ", h("code", null, value))));
}

/** Runs at most `n` of the given tasks at once. */
export function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (running >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/**
 * Asks for confirmation in a modal dialog (Escape or Cancel: no). The dialog says what the
 * action removes; Cancel has the focus.
 */
export function confirmAction(title: string, body: readonly Child[], action: string): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button" }, "Cancel");
    const confirm = h("button", { type: "button", class: "danger" }, action);
    const dialog = h(
      "dialog",
      { "aria-labelledby": "dialog-title" },
      h("h2", { id: "dialog-title" }, title),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "actions" }, cancel, confirm),
    );
    const finish = (answer: boolean) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener("click", () => finish(false));
    confirm.addEventListener("click", () => finish(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Shows a message in the page's status area (`error` ones are announced at once). */
export function notify(message: Child, kind: "ok" | "error" = "ok"): void {
  const status = document.getElementById("status");
  if (!status) return;
  fill(status, h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null }, message));
  status.dataset.fresh = "true";
}

/**
 * Clears the status area when a page is drawn, except for a message shown just before: an
 * action that goes to another page (a deletion, signing in or out) keeps its message there.
 */
export function clearNotice(): void {
  const status = document.getElementById("status");
  if (!status) return;
  if (status.dataset.fresh) delete status.dataset.fresh;
  else status.replaceChildren();
}
