// The security officer's pages: proofs and checkpoints checked here, in the browser, with the
// key the officer pinned (verify.js); the activity charts drawn as SVG. No inline script (CSP):
// the server hands data over in <script type="application/json"> blocks.

import {
  fingerprint,
  pinKey,
  pinnedKey,
  unpinKey,
  verifyCheckpoint,
  verifyCheckpointPair,
  verifyEvent,
} from "./verify.js";
import { drawCharts } from "./charts.js";
import { localiseTimes } from "../console.js";

const $ = (sel) => document.querySelector(sel);

function data(id) {
  const el = document.getElementById(id);
  return el ? JSON.parse(el.textContent) : null;
}

const MSG = data("audit-messages") || {};

function say(key, values = {}) {
  const text = MSG[key] || key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : ""));
}

function show(el, state, text) {
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

// The browser's zone for the filter form's datetime-local fields (minutes east of UTC).
for (const tz of document.querySelectorAll("input[data-tz]")) {
  tz.value = String(-new Date().getTimezoneOffset());
}

/** Which key to check with; tells the officer when the server offers another one. */
async function keyStatus(offered) {
  const box = $("#key-status");
  const pinned = pinnedKey();
  if (!pinned) {
    if (box) {
      show(box, "warn", say("no_pin", { fp: await fingerprint(offered) }) + " ");
      const link = document.createElement("a");
      link.href = "/console/audit/key";
      link.textContent = say("pin_link");
      box.append(link);
    }
    return null;
  }
  const fp = await fingerprint(pinned);
  if (pinned.trim() !== String(offered).trim()) {
    show(box, "fail", say("key_mismatch", { pinned: fp, offered: await fingerprint(offered) }));
  } else {
    show(box, "ok", say("key_ok", { fp }));
  }
  return pinned;
}

const REASONS = ["not_included", "bad_entry", "bad_signature", "bad_key", "malformed", "unsupported_hash"];

function reason(result) {
  return REASONS.includes(result.code) ? say(`why.${result.code}`) : result.detail;
}

/** Show the event as the checked entry says, not as the server's HTML says: what the officer
 * reads is then exactly what the proof covers (or what failed it). */
function showEntry(entryText) {
  let ev;
  try {
    ev = JSON.parse(entryText);
  } catch {
    return;
  }
  for (const el of document.querySelectorAll("[data-entry-fields] [data-field], pre[data-field]")) {
    const name = el.dataset.field;
    if (name === "ts") {
      el.setAttribute("datetime", ev.ts);
      el.textContent = ev.ts;
    } else if (name === "data") {
      el.textContent = JSON.stringify(ev.data, null, 2);
    } else {
      el.textContent = ev[name] == null ? "—" : String(ev[name]);
    }
  }
  localiseTimes();
}

async function checkProofs() {
  const block = data("proof-data");
  if (!block) return;
  if (block.rows.length === 1 && $("[data-entry-fields]")) showEntry(block.rows[0].entry);
  const key = await keyStatus(block.offered_key);
  const cells = (index) => document.querySelectorAll(`[data-proof-index="${index}"]`);
  if (!key) {
    for (const row of block.rows) for (const c of cells(row.index)) show(c, "warn", say("unchecked"));
    show($("#proof-summary"), "warn", say("unchecked"));
    return;
  }
  let failed = 0;
  for (const row of block.rows) {
    const r = await verifyEvent({ ...row, checkpoint: block.checkpoint }, key);
    if (!r.ok) failed += 1;
    const text = r.ok ? say("included", { size: r.size }) : say("not_verified", { why: reason(r) });
    for (const c of cells(row.index)) show(c, r.ok ? "ok" : "fail", text);
  }
  const n = block.rows.length;
  show(
    $("#proof-summary"),
    failed ? "fail" : "ok",
    failed ? say("some_failed", { failed, n }) : say("all_ok", { n }),
  );
}

async function checkChain() {
  const block = data("chain-data");
  if (!block || !block.checkpoints.length) return;
  const key = await keyStatus(block.offered_key);
  const cps = block.checkpoints;
  const shown = document.querySelectorAll("[data-cp-size]");
  let failed = 0;
  for (let i = 0; i < shown.length; i++) {
    const cell = shown[i];
    if (!key) {
      show(cell, "warn", say("unchecked"));
      continue;
    }
    const newer = cps[i];
    const older = cps[i + 1];
    const r = older
      ? await verifyCheckpointPair(older.checkpoint, newer.checkpoint, newer.proof, key)
      : await verifyCheckpoint(newer.checkpoint, key);
    if (!r.ok) failed += 1;
    const good = older ? say("consistent", { size: older.size }) : say("signed");
    show(cell, r.ok ? "ok" : "fail", r.ok ? good : say("not_verified", { why: reason(r) }));
  }
  if (key) {
    const n = shown.length;
    show(
      $("#chain-summary"),
      failed ? "fail" : "ok",
      failed ? say("chain_failed", { failed, n }) : say("chain_ok", { n }),
    );
  } else {
    show($("#chain-summary"), "warn", say("unchecked"));
  }
}

async function keyPage() {
  const status = $("#pinned-status");
  if (!status) return;
  const unpin = $("#unpin");
  const error = $("#pin-error");
  const refresh = async () => {
    const pinned = pinnedKey();
    if (pinned) {
      show(status, "ok", say("pinned_is", { fp: await fingerprint(pinned) }));
      unpin.hidden = false;
    } else {
      show(status, "warn", say("nothing_pinned"));
      unpin.hidden = true;
    }
  };
  const pin = async (text) => {
    error.hidden = true;
    try {
      await pinKey(text);
    } catch {
      error.textContent = say("bad_key_text");
      error.hidden = false;
    }
    await refresh();
  };
  $("#pin-pasted").addEventListener("click", () => pin($("#pin-input").value));
  $("#pin-offered").addEventListener("click", () => {
    if (window.confirm(say("confirm_offered"))) pin($("#offered-key").textContent);
  });
  unpin.addEventListener("click", async () => {
    unpinKey();
    await refresh();
  });
  await refresh();
}

function charts() {
  const block = data("activity-data");
  if (block) drawCharts(block, say, document.documentElement.lang || "en");
}

for (const el of document.querySelectorAll("[data-js-only]")) el.hidden = false;
await Promise.all([checkProofs(), checkChain(), keyPage()]);
charts();
document.body.dataset.auditReady = "1"; // for tests: every check above has finished
