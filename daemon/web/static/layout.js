// The card layout editor's live preview (docs/web.md, "Card layouts"): a moment after each edit, the server draws the
// card with the pops' own layout code (GET /layouts/preview) and this puts its title and lines in the page as text,
// never as markup, bold where the line's style says, as the tray shows them.
"use strict";
(function () {
  const form = document.getElementById("layout-form");
  if (!form) {
    return;
  }
  const items = document.getElementById("items");
  const customer = document.getElementById("preview-customer");
  const extension = document.getElementById("preview-extension");
  const preview = document.getElementById("preview");
  const error = document.getElementById("preview-error");
  let timer = null;
  let asked = 0;

  function draw(card) {
    const summary = document.createElement("strong");
    summary.className = "summary";
    summary.textContent = card.title;
    const rows = card.lines.map(function (line) {
      const row = document.createElement("div");
      row.className = "line " + line.style;
      const text = line.style === "plain" ? row : row.appendChild(document.createElement("b"));
      text.textContent = line.text;
      return row;
    });
    preview.replaceChildren(summary, ...rows);
  }

  async function refresh() {
    const mine = ++asked;
    const query = new URLSearchParams({items: items.value, customer: customer.value, extension: extension.value});
    try {
      const answer = await fetch("/layouts/preview?" + query, {credentials: "same-origin"});
      const body = await answer.json();
      if (mine !== asked) {
        return;  // a later edit asked again
      }
      if (answer.ok) {
        draw(body);
        error.textContent = "";
      } else {
        error.textContent = body.error || "the preview failed";
      }
    } catch (e) {
      if (mine === asked) {
        error.textContent = "the preview failed: " + e.message;
      }
    }
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  items.addEventListener("input", later);
  customer.addEventListener("input", later);
})();
