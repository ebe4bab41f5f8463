// The steward's pages: a live countdown next to each deadline, in the page's language
// (Intl.RelativeTimeFormat), e.g. "Due · in 3 days" or "Overdue · 2 hours ago".

const lang = document.documentElement.lang || "zh-CN";
const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
const UNITS = [
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

export function relative(seconds) {
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "minute") {
      return rtf.format(Math.round(seconds / size), unit);
    }
  }
  return "";
}

function tick() {
  for (const el of document.querySelectorAll("[data-deadline]")) {
    if (!el.dataset.label) el.dataset.label = el.textContent.trim();
    const left = (new Date(el.dataset.deadline).getTime() - Date.now()) / 1000;
    if (Number.isNaN(left)) continue;
    el.textContent = `${el.dataset.label} · ${relative(left)}`;
  }
}

tick();
setInterval(tick, 30000);
