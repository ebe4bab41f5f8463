// Progressive enhancement for the console (no build step, no inline script: CSP).
// Every page works without it; it only makes dates local and adds small conveniences.

const lang = document.documentElement.lang || "zh-CN";

/** Show every <time datetime="..."> in the browser's time zone and language. */
export function localiseTimes(root = document) {
  const format = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      el.textContent = format.format(when);
      el.title = when.toISOString();
    }
  }
}

/** Buttons with data-copy="#id" copy that element's text. */
function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const source = document.querySelector(button.dataset.copy);
      if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent.trim());
    });
  }
}

/** Forms with data-confirm="question" ask before submitting. */
function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

localiseTimes();
copyButtons();
confirmations();
