// Signing the UI in and out. An API token is exchanged for a signed, HttpOnly, SameSite=Strict
// session cookie (POST /api/v1/session); the page keeps neither the token nor the cookie, only
// the session's CSRF secret (api.js sends it with every request that changes something).
// A sign-in URL's ?token= (`widecube serve` prints one on its first start) leaves the address
// bar before anything else runs, so the secret stays out of history and bookmarks.
// Where the server has an identity provider (GET /session says `oidc`), the form also offers
// "Sign in with your institute": a plain link to /api/v1/session/oidc/login, which comes back
// signed in, or with ?signin_error= saying why not (shown in the form, then dropped from the URL).
// With authentication off (single-user mode) the control stays hidden.

import { api, ApiError } from "./api.js";

let signInError = null; // why the identity provider's sign-in failed (?signin_error=)

/** Take ?token= (and ?signin_error=) out of the address bar (no history entry); returns the
 * token, or null. */
export function takeToken() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  signInError = url.searchParams.get("signin_error");
  if (token === null && signInError === null) return null;
  url.searchParams.delete("token");
  url.searchParams.delete("signin_error");
  history.replaceState(history.state, "", `${url.pathname}${url.search}${url.hash}`);
  return token;
}

export class SessionControl {
  /** The header's elements; `onChange()` runs after a sign-in or sign-out, `onError(err)`
   * shows what went wrong outside the form. */
  constructor({ box, user, open, signOut, form, input, cancel, error }, { onChange, onError }) {
    Object.assign(this, { box, user, open, signOut, form, input, cancel, error, onChange, onError });
    this.me = null;
    open.addEventListener("click", () => this.showForm(true));
    cancel.addEventListener("click", () => this.showForm(false));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.signIn(input.value.trim()).catch(onError);
    });
    input.addEventListener("keydown", (e) => e.key === "Escape" && this.showForm(false));
    signOut.addEventListener("click", () => this.signOutNow().catch(onError));
  }

  /** Whether the server asks who is there and nobody is signed in. */
  get anonymous() {
    return Boolean(this.me?.auth) && !this.me.user;
  }

  /** At start-up: sign in with the link's token if there is one, else ask who this is. */
  async start(token) {
    if (token) {
      if (await this.signIn(token, { quiet: true })) return;
    }
    try {
      this.show(await api.session());
      if (signInError) this.showForm(true, `Sign-in failed: ${signInError}`);
      signInError = null;
    } catch (err) {
      // an ended session (token revoked, cookie expired): the server has dropped the cookie
      if (!(err instanceof ApiError && err.status === 401)) throw err;
      this.show(await api.session());
      this.showForm(true, `Your session has ended (${err.message}): sign in again.`);
    }
  }

  /** Exchange `token` for a session; true when signed in (errors go to the form's line). */
  async signIn(token, { quiet = false } = {}) {
    if (!token) return this.showForm(true, "Paste an API token (wc_…).");
    this.setError("");
    try {
      this.show(await api.signIn(token));
    } catch (err) {
      if (quiet) this.show(await api.session());
      this.showForm(true, `Sign-in failed: ${err.message}`);
      return false;
    } finally {
      this.input.value = ""; // the secret does not stay in the page
    }
    if (!quiet) await this.onChange();
    return true;
  }

  async signOutNow() {
    try {
      await api.signOut();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) throw err; // 401: already ended
    }
    this.show(await api.session());
    await this.onChange();
  }

  /** Draw who is signed in (the GET or POST /session answer). */
  show(me) {
    this.me = me;
    this.box.hidden = !me.auth;
    const signed = Boolean(me.user);
    this.user.textContent = signed ? `Signed in as ${me.user}` : "";
    this.user.hidden = !signed;
    this.signOut.hidden = !signed;
    this.form.hidden = true;
    this.open.hidden = signed;
    this.open.setAttribute("aria-expanded", "false");
    const oidc = document.getElementById("sign-in-oidc");
    if (oidc) oidc.hidden = !me.oidc;
    this.setError("");
  }

  showForm(on, error = "") {
    this.form.hidden = !on;
    this.open.hidden = on || Boolean(this.me?.user);
    this.open.setAttribute("aria-expanded", String(on));
    this.setError(error);
    if (on) this.input.focus();
    else this.input.value = "";
    return false;
  }

  setError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }
}
