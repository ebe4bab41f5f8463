// Line charts of audit activity as plain SVG (no chart library, nothing from a CDN).
// Colours keep 3:1 against white (WCAG 1.4.11) and each line also has its own dash pattern,
// so a department is never told by colour alone; the page also has the numbers as a table.

const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#0b4f9c", "#a4161a", "#1b6b2f", "#7a4b00", "#6a1b9a", "#00695c", "#4a4a4a"];
const DASHES = ["", "6 3", "2 3", "10 4 2 4", "4 4", "12 3", "1 2"];
const LINES = 6; // busiest departments drawn one by one; the rest summed as one line
const W = 960;
const H = 260;
const PAD = { left: 56, right: 16, top: 16, bottom: 40 };

function el(name, attrs = {}, text = "") {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text) node.textContent = text;
  return node;
}

/** Top departments by events, the others summed (so seven lines at most). */
export function lines(data, key, otherLabel, noneLabel) {
  const series = data.series.map((s) => ({
    label: s.department === null ? noneLabel : s.department,
    values: s[key],
  }));
  if (series.length <= LINES + 1) return series;
  const head = series.slice(0, LINES);
  const rest = series.slice(LINES);
  const summed = data.buckets.map((_, i) => rest.reduce((n, s) => n + s.values[i], 0));
  return [...head, { label: otherLabel, values: summed }];
}

function niceMax(n) {
  if (n <= 5) return 5;
  const mag = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * mag >= n) return step * mag;
  return 10 * mag;
}

function draw(figure, data, key, say, lang) {
  const series = lines(data, key, say("chart_other"), say("chart_none"));
  const n = data.buckets.length;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const x = (i) => PAD.left + (n <= 1 ? 0 : (i * (W - PAD.left - PAD.right)) / (n - 1));
  const y = (v) => H - PAD.bottom - (v * (H - PAD.top - PAD.bottom)) / max;
  const total = series.reduce((t, s) => t + s.values.reduce((a, b) => a + b, 0), 0);
  const titleId = `${figure.id}-title`;
  const svg = el("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": titleId,
    focusable: "false",
  });
  const caption = figure.querySelector("figcaption").textContent;
  svg.append(el("title", { id: titleId }, say("chart_summary", { caption, total, n: series.length })));
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), stroke: "#c9ced6" }));
    svg.append(el("text", { x: PAD.left - 8, y: y(v) + 4, "text-anchor": "end", "font-size": 12, fill: "#1a1a1a" }, String(v)));
  }
  const fmt = new Intl.DateTimeFormat(lang, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  for (const i of [...new Set([0, Math.floor((n - 1) / 2), n - 1])]) {
    if (i < 0) continue;
    const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
    const label = fmt.format(new Date(data.buckets[i]));
    svg.append(el("text", { x: x(i), y: H - 12, "text-anchor": anchor, "font-size": 12, fill: "#1a1a1a" }, label));
  }
  series.forEach((s, k) => {
    const points = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const attrs = { points, fill: "none", stroke: COLOURS[k % COLOURS.length], "stroke-width": 2.5 };
    if (DASHES[k % DASHES.length]) attrs["stroke-dasharray"] = DASHES[k % DASHES.length];
    const line = el("polyline", attrs);
    line.append(el("title", {}, `${s.label}: ${s.values.reduce((a, b) => a + b, 0)}`));
    svg.append(line);
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, k) => {
    const item = document.createElement("li");
    const swatch = el("svg", { width: 28, height: 10, "aria-hidden": "true", focusable: "false" });
    const sample = { x1: 0, x2: 28, y1: 5, y2: 5, stroke: COLOURS[k % COLOURS.length], "stroke-width": 3 };
    if (DASHES[k % DASHES.length]) sample["stroke-dasharray"] = DASHES[k % DASHES.length];
    swatch.append(el("line", sample));
    item.append(swatch, document.createTextNode(` ${s.label} (${s.values.reduce((a, b) => a + b, 0)})`));
    legend.append(item);
  });
  for (const old of figure.querySelectorAll("svg, ul.legend")) old.remove();
  figure.append(svg, legend);
}

export function drawCharts(data, say, lang) {
  for (const figure of document.querySelectorAll("figure.chart[data-series]")) {
    draw(figure, data, figure.dataset.series, say, lang);
  }
}
