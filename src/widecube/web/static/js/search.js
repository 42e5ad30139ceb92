// Gene search with autocomplete, as an ARIA combobox: type a prefix, move with the arrow
// keys, pick with Enter or a click, close with Escape. Enter on text that matches no
// suggestion still submits it (a list, an Ensembl ID, a typo): the page resolves it on the
// server, which names the unknown ones with suggestions.

import { el, replace } from "./dom.js";

let uid = 0;

export class GeneSearch {
  /**
   * @param {HTMLInputElement} input  the text box (role=combobox)
   * @param {HTMLElement} listbox     the suggestion list (role=listbox)
   * @param {{suggest: (prefix: string) => Promise<string[]>, onPick: (gene: string) => void}} hooks
   */
  constructor(input, listbox, { suggest, onPick }) {
    Object.assign(this, { input, listbox, suggest, onPick });
    this.options = [];
    this.active = -1;
    this.ticket = 0;
    this.prefix = `gene-option-${uid++}`;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", listbox.id);
    listbox.setAttribute("role", "listbox");
    input.addEventListener("input", () => this.schedule());
    input.addEventListener("keydown", (e) => this.key(e));
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    listbox.addEventListener("mousedown", (e) => e.preventDefault()); // keep focus in the box
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 120);
  }

  async refresh() {
    const prefix = this.input.value.trim();
    const ticket = ++this.ticket;
    if (!prefix) return this.close();
    let genes = [];
    try {
      genes = await this.suggest(prefix);
    } catch {
      genes = []; // suggestions are a convenience; errors surface when a gene is picked
    }
    if (ticket === this.ticket) this.show(genes);
  }

  show(genes) {
    this.options = genes;
    this.navigated = false;
    this.active = genes.length ? 0 : -1;
    replace(this.listbox, ...genes.map((gene, i) => el("li", {
      id: `${this.prefix}-${i}`, role: "option", "aria-selected": i === this.active ? "true" : "false",
      "data-gene": gene, onclick: () => this.pick(gene),
    }, gene)));
    if (!genes.length) this.listbox.append(el("li", { class: "empty", role: "presentation" }, "no gene starts with this"));
    this.listbox.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.mark();
  }

  mark() {
    [...this.listbox.querySelectorAll("[role=option]")].forEach((node, i) => {
      node.setAttribute("aria-selected", i === this.active ? "true" : "false");
      if (i === this.active) node.scrollIntoView({ block: "nearest" });
    });
    if (this.active >= 0) this.input.setAttribute("aria-activedescendant", `${this.prefix}-${this.active}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  close() {
    this.listbox.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    const n = this.options.length;
    if (event.key === "ArrowDown" && n) {
      this.active = (this.active + 1) % n;
      this.navigated = true;
      this.mark();
    } else if (event.key === "ArrowUp" && n) {
      this.active = (this.active - 1 + n) % n;
      this.navigated = true;
      this.mark();
    } else if (event.key === "Enter") {
      this.submit();
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
  }

  /** Enter: the highlighted suggestion if the user moved to it, else the typed name. */
  async submit() {
    const typed = this.input.value.trim();
    if (this.navigated && !this.listbox.hidden && this.active >= 0) return this.pick(this.options[this.active]);
    if (!typed) return;
    const same = (g) => g.toLowerCase() === typed.toLowerCase();
    let exact = this.options.find(same);
    if (!exact) {
      try {
        exact = (await this.suggest(typed)).find(same); // suggestions may lag the typing
      } catch {
        exact = undefined;
      }
    }
    this.pick(exact || typed);
  }

  pick(gene) {
    this.navigated = false;
    this.input.value = "";
    this.ticket++;
    this.close();
    this.onPick(gene);
  }
}
