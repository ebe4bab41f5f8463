// The developer's test subscription: polls the console's records endpoint (the same
// delivery path as the API's pull, so only the fields the department is granted) and lists
// each record that arrives. The cursor stays in the page; nothing is committed.

const section = document.getElementById("test-subscription");
const list = document.getElementById("arrived");
const status = document.getElementById("arrivals-status");
const MAX_SHOWN = 50;
let cursor = "";
let withheld = 0;
let failures = 0;

function show(record) {
  const item = document.createElement("li");
  const meta = document.createElement("p");
  meta.textContent = `partition ${record.partition} · offset ${record.offset}`;
  const value = document.createElement("pre");
  value.className = "arrived-value";
  value.textContent = JSON.stringify(record.value, null, 2);
  item.append(meta, value);
  list.prepend(item);
  while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
}

async function poll() {
  const id = encodeURIComponent(section.dataset.sub);
  const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
  try {
    const response = await fetch(`/console/dev/try/subscriptions/${id}/records${query}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      status.textContent = `${response.status} ${(await response.json()).title || ""}`;
      return false; // refused or gone: stop polling
    }
    const page = await response.json();
    page.records.forEach(show);
    withheld += page.withheld;
    if (page.records.length || page.withheld) {
      status.textContent = withheld ? `${status.dataset.withheldLabel} ${withheld}` : "";
    }
    cursor = page.cursor;
    failures = 0;
  } catch {
    failures += 1;
  }
  return failures < 5;
}

async function loop() {
  // The server holds each request until records arrive or a second passes.
  while (await poll()) {
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

if (section && list && status) loop();
