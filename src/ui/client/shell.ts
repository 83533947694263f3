/**
 * What every page shares: the header (who is signed in), the sign-in form, and how failures are
 * shown (signed out, no rights, not found, registry unreachable).
 */
import { ApiError, basicHeader, currentLogin, request, storeLogin, type Login } from "./api.js";
import { fill, h, notify } from "./dom.js";
import { address, forgetRights } from "./nav.js";

/** Asks the page to draw itself again (main.ts listens). */
export function redraw(): void {
  document.dispatchEvent(new Event("r2-ui:redraw"));
}

/** Goes to `hash`, or draws the page again when it is already there. */
export function go(hash: string): void {
  if (location.hash === hash || (hash === "#/" && location.hash === "")) redraw();
  else location.hash = hash;
}

/** The header's right side: who is signed in, and the sign-in or sign-out control. */
export function drawHeader(): void {
  const who = document.getElementById("who");
  if (!who) return;
  const login = currentLogin();
  if (login) {
    fill(who, h("span", { class: "user" }, "Signed in as ", h("strong", null, login.user)), h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"));
  } else if (!location.hash.startsWith("#/signin")) {
    fill(who, h("a", { href: address("/signin", { next: location.hash || "#/" }), id: "sign-in" }, "Sign in"));
  } else {
    who.replaceChildren();
  }
}

function signOut(): void {
  storeLogin(undefined);
  forgetRights();
  notify("Signed out. Your credentials are no longer kept in this tab.");
  go("#/");
}

/**
 * The sign-in form: a username and password (Basic), or a token (sent as `Bearer`), checked with
 * `GET /v2/` before they are kept in the tab's session storage.
 */
export function drawSignIn(main: HTMLElement, next: string, message = ""): void {
  const error = h("p", { class: "error", role: "alert", id: "sign-in-error" }, message);
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const token = h("input", { id: "token", name: "token", type: "password", autocomplete: "off" });
  const withPassword = h("div", { class: "fields" }, h("label", { for: "username" }, "Username"), user, h("label", { for: "password" }, "Password"), password);
  const withToken = h("div", { class: "fields", hidden: true }, h("label", { for: "token" }, "Token"), token);
  const choice = (value: string, label: string, checked: boolean) =>
    h("label", { class: "choice" }, h("input", { type: "radio", name: "method", value, checked, onchange: () => switchTo(value) }), label);
  const switchTo = (method: string) => {
    const tokenMode = method === "token";
    withPassword.hidden = tokenMode;
    withToken.hidden = !tokenMode;
    user.required = password.required = !tokenMode;
    token.required = tokenMode;
  };
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in", "aria-describedby": "sign-in-error" },
    h("fieldset", null, h("legend", null, "Sign in with"), choice("password", "Username and password", true), choice("token", "Token", false)),
    withPassword,
    withToken,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tokenMode = !withToken.hidden;
    const login: Login = tokenMode
      ? { authorization: `Bearer ${token.value.trim()}`, user: "token" }
      : { authorization: basicHeader(user.value, password.value), user: user.value };
    submit.disabled = true;
    error.textContent = "Checking…";
    try {
      await request("/v2/", { login });
      storeLogin(login);
      forgetRights();
      notify(`Signed in as ${login.user}.`);
      go(next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/");
    } catch (failure) {
      error.textContent =
        failure instanceof ApiError && failure.kind === "unauthorized"
          ? `The registry refused these credentials: ${failure.message}.`
          : failure instanceof ApiError
            ? failure.message
            : String(failure);
      submit.disabled = false;
      (tokenMode ? token : password).select();
    }
  });
  fill(
    main,
    h("h1", { tabindex: -1 }, "Sign in"),
    h("p", null, "Use this registry's own credentials (the ones you give ", h("code", null, "docker login"), "). They are kept in this tab only, until you sign out or close it."),
    error,
    form,
  );
}

const TITLES: Record<ApiError["kind"], string> = {
  unauthorized: "Signed out",
  denied: "No rights",
  "not-found": "Not found",
  unreachable: "Registry unreachable",
  busy: "Registry busy",
  failed: "Something went wrong",
};

/** Draws a failure in place of the page: the sign-in form for a 401, else the registry's message. */
export function drawProblem(main: HTMLElement, failure: unknown): void {
  if (failure instanceof ApiError && failure.kind === "unauthorized") {
    const login = currentLogin();
    const message = login ? `The registry refused your credentials (${failure.message}). Sign in again.` : `Sign in to browse this registry (it answered: ${failure.message}).`;
    drawSignIn(main, location.hash || "#/", message);
    return;
  }
  const title = failure instanceof ApiError ? TITLES[failure.kind] : TITLES.failed;
  const message = failure instanceof Error ? failure.message : String(failure);
  fill(
    main,
    h("h1", { tabindex: -1 }, title),
    h("p", { class: "error", role: "alert" }, message),
    h("p", null, h("button", { type: "button", onclick: redraw }, "Try again"), " ", h("a", { href: "#/" }, "All repositories")),
  );
}

/** A failure as one line, for the status area (actions that were refused). */
export function describe(failure: unknown): string {
  if (!(failure instanceof ApiError)) return failure instanceof Error ? failure.message : String(failure);
  if (failure.kind === "denied") return `Refused by the registry: ${failure.message}`;
  if (failure.kind === "unauthorized") return `Signed out: ${failure.message}. Sign in again.`;
  return failure.message;
}
