// Independent verification of the audit log in the officer's browser (WebCrypto only).
//
// Mirrors audit/merkle.py (RFC 9162 §2.1: leaf = H(0x00 || entry), node = H(0x01 || l || r))
// and audit/checkpoint.py (C2SP tlog-checkpoint body in a C2SP signed note, Ed25519, key id =
// SHA-256(name || 0x0A || 0x01 || public key)[:4]). No DOM, no network: every input is passed
// in, and the checkpoint key must be one the officer pinned, never the key that came with the
// proof (a server that forges proofs would send its own key too).

const enc = new TextEncoder();
const DASH = "\u2014";
const EXTENSION = "exchange-audit";
const ALGORITHMS = { sha256: "SHA-256" };

export class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// -- bytes ------------------------------------------------------------------------------------

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) {
    throw new VerifyError("malformed", "not a hex string");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function b64decode(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new VerifyError("malformed", "not base64");
  }
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// -- hashing ----------------------------------------------------------------------------------

export function hasher(name) {
  const algorithm = ALGORITHMS[name];
  if (!algorithm) {
    throw new VerifyError("unsupported_hash", `the browser cannot check ${name} trees`);
  }
  const digest = async (data) => new Uint8Array(await crypto.subtle.digest(algorithm, data));
  return {
    name,
    leaf: (entry) => digest(concat(Uint8Array.of(0), entry)),
    node: (left, right) => digest(concat(Uint8Array.of(1), left, right)),
  };
}

// RFC 9162 §2.1.3.2. Indexes may exceed 2^32: plain numbers (exact below 2^53), no bit ops.
export async function verifyInclusion(h, index, size, leafHash, proof, root) {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size)) || index < 0 || index >= size) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await h.node(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await h.node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

function isPow2(n) {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

// RFC 9162 §2.1.4.2.
export async function verifyConsistency(h, size1, size2, proof, root1, root2) {
  if (!(Number.isSafeInteger(size1) && Number.isSafeInteger(size2)) || size1 < 0) return false;
  if (size2 < size1) return false;
  if (size1 === size2) return proof.length === 0 && equal(root1, root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = await h.node(c, fr);
      sr = await h.node(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = await h.node(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return equal(fr, root1) && equal(sr, root2) && sn === 0;
}

// -- signed notes -----------------------------------------------------------------------------

// "<name>+<hex key id>+<base64(0x01 || public key)>"; base64 may hold "+": split twice only.
export async function parseVerifierKey(text) {
  const trimmed = String(text).trim();
  const first = trimmed.indexOf("+");
  const second = trimmed.indexOf("+", first + 1);
  if (first <= 0 || second < 0) throw new VerifyError("bad_key", "verifier key is malformed");
  const name = trimmed.slice(0, first);
  const kid = trimmed.slice(first + 1, second);
  const raw = b64decode(trimmed.slice(second + 1));
  if (raw.length !== 33 || raw[0] !== 1) {
    throw new VerifyError("bad_key", "verifier key is not an Ed25519 key");
  }
  const id = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), raw))).slice(0, 4);
  if (bytesToHex(id) !== kid.toLowerCase()) {
    throw new VerifyError("bad_key", "verifier key id does not match its key");
  }
  const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, [
    "verify",
  ]);
  return { name, keyId: id, publicKey: raw.slice(1), key, text: trimmed };
}

async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

// What the officer compares with the key printed by `exchange up` (audit-checkpoint.pub).
export async function fingerprint(keyText) {
  const hex = bytesToHex(await sha256(enc.encode(String(keyText).trim())));
  return hex.slice(0, 32).match(/.{4}/g).join(" ");
}

// Check the note's signature by `verifier` and return its checkpoint body.
export async function openNote(note, verifier) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new VerifyError("bad_checkpoint", "checkpoint has no signature block");
  const body = note.slice(0, split + 1);
  let signed = false;
  for (const line of note.slice(split + 2).split("\n")) {
    const [dash, name, blob, ...rest] = line.split(" ");
    if (dash !== DASH || name !== verifier.name || !blob || rest.length) continue;
    let raw;
    try {
      raw = b64decode(blob);
    } catch {
      continue;
    }
    if (raw.length !== 68 || !equal(raw.slice(0, 4), verifier.keyId)) continue;
    signed = await crypto.subtle.verify(
      { name: "Ed25519" },
      verifier.key,
      raw.slice(4),
      enc.encode(body),
    );
    break;
  }
  if (!signed) {
    throw new VerifyError("bad_signature", `checkpoint is not validly signed by ${verifier.name}`);
  }
  return parseBody(body);
}

export function parseBody(body) {
  const lines = body.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "") {
    throw new VerifyError("bad_checkpoint", "checkpoint body is malformed");
  }
  const [origin, size, root] = lines;
  let hash = "sha256";
  for (const ext of lines.slice(3, -1)) {
    const parts = ext.split(" ");
    if (parts[0] === EXTENSION && parts.length === 3) {
      if (parts[1] !== "1") throw new VerifyError("bad_checkpoint", "unsupported checkpoint format");
      hash = parts[2];
    }
  }
  if (!origin || !/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) {
    throw new VerifyError("bad_checkpoint", "checkpoint origin or size is malformed");
  }
  return { origin, size: Number(size), root: b64decode(root), hash };
}

// -- what the console calls -------------------------------------------------------------------

// Is `entry` (the exact canonical text of the event) leaf `index` of the tree that the signed
// `checkpoint` commits to? The leaf hash is recomputed here from the entry, and the root is
// taken from the signed note, never from the server's answer. Resolves to
// {ok, code, detail, size, leafHash}; never throws.
export async function verifyEvent({ entry, index, proof, checkpoint }, pinnedKey) {
  try {
    const verifier = await parseVerifierKey(pinnedKey);
    const cp = await openNote(checkpoint, verifier);
    const h = hasher(cp.hash);
    const leafHash = await h.leaf(enc.encode(entry));
    const path = proof.map(hexToBytes);
    let claimed;
    try {
      claimed = JSON.parse(entry).index;
    } catch {
      return fail("bad_entry", "the event is not valid JSON");
    }
    if (claimed !== index) return fail("bad_entry", "the event names another index");
    const ok = await verifyInclusion(h, index, cp.size, leafHash, path, cp.root);
    if (!ok) return fail("not_included", "the event is not in the signed tree", cp.size);
    return { ok: true, code: "included", detail: "", size: cp.size, leafHash: bytesToHex(leafHash) };
  } catch (err) {
    if (err instanceof VerifyError) return fail(err.code, err.message);
    return fail("error", String(err && err.message ? err.message : err));
  }
}

// Two signed checkpoints of one log: both signatures, and the older is a prefix of the newer.
export async function verifyCheckpointPair(older, newer, proof, pinnedKey) {
  try {
    const verifier = await parseVerifierKey(pinnedKey);
    const a = await openNote(older, verifier);
    const b = await openNote(newer, verifier);
    if (a.origin !== b.origin || a.hash !== b.hash) {
      return fail("other_log", "the checkpoints are of different logs");
    }
    const h = hasher(b.hash);
    const ok = await verifyConsistency(h, a.size, b.size, proof.map(hexToBytes), a.root, b.root);
    return ok ? { ok: true, code: "consistent", detail: "" } : fail("inconsistent", "not a prefix");
  } catch (err) {
    if (err instanceof VerifyError) return fail(err.code, err.message);
    return fail("error", String(err && err.message ? err.message : err));
  }
}

// One checkpoint's signature alone (the oldest one shown has no predecessor on the page).
export async function verifyCheckpoint(note, pinnedKey) {
  try {
    const cp = await openNote(note, await parseVerifierKey(pinnedKey));
    return { ok: true, code: "signed", detail: "", size: cp.size };
  } catch (err) {
    if (err instanceof VerifyError) return fail(err.code, err.message);
    return fail("error", String(err && err.message ? err.message : err));
  }
}

function fail(code, detail, size) {
  return { ok: false, code, detail, size };
}

// -- the pinned key ---------------------------------------------------------------------------

const PIN = "exchange.audit.verifier-key";

export function pinnedKey(storage = globalThis.localStorage) {
  return storage ? storage.getItem(PIN) : null;
}

// Pin a key the officer checked (pasted from `exchange up`, or a fingerprint compared by eye).
export async function pinKey(text, storage = globalThis.localStorage) {
  const parsed = await parseVerifierKey(text); // throws on anything that is not a valid key
  storage.setItem(PIN, parsed.text);
  return parsed.text;
}

export function unpinKey(storage = globalThis.localStorage) {
  storage.removeItem(PIN);
}
