// Checks the access log in the browser, with Web Crypto, trusting nothing the server computed:
// - a signed checkpoint (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) against the verifier
//   key, with Ed25519;
// - an entry's inclusion proof (RFC 9162, section 2.1.3.2) from the SHA-256 of its leaf bytes
//   up to the checkpoint's root: leaf = SHA-256(0x00 || bytes), node = SHA-256(0x01 || l || r).
"use strict";

const GovernVerify = (() => {
  const enc = new TextEncoder();

  function b64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hex(text) {
    if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error("not hex");
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (leaf) => sha256(concat(new Uint8Array([0]), leaf));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

  // RFC 9162 2.1.3.2, step by step.
  async function verifyInclusion(leaf, index, treeSize, path, root) {
    // 1. The index must be within the tree.
    if (!(index >= 0 && index < treeSize)) return false;
    // 2. fn = index, sn = tree_size - 1, r = the leaf's hash.
    let fn = index, sn = treeSize - 1;
    let r = await leafHash(leaf);
    // 3. For each p in the path:
    for (const p of path) {
      // a. if sn is 0, the path is too long: stop and fail.
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        // b. if LSB(fn) is set or fn equals sn: r = HASH(0x01 || p || r) ...
        r = await nodeHash(p, r);
        // ... and, if LSB(fn) is not set, shift both right until LSB(fn) is set or fn is 0.
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        // c. otherwise r = HASH(0x01 || r || p).
        r = await nodeHash(r, p);
      }
      // d. shift fn and sn right by one.
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    // 4. Success when sn is 0 and r equals the root.
    return sn === 0 && equal(r, root);
  }

  // The verifier key "name+keyid_hex+base64(0x01 || 32-byte Ed25519 key)".
  async function parseKey(vkey) {
    // The base64 may itself hold "+": only the first two separate the fields.
    const first = vkey.indexOf("+"), second = vkey.indexOf("+", first + 1);
    if (first < 0 || second < 0) throw new Error("not a verifier key");
    const name = vkey.slice(0, first), id = vkey.slice(first + 1, second), material = vkey.slice(second + 1);
    const raw = b64(material);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
    const pub = raw.slice(1);
    // The key id is SHA-256(name || 0x0A || 0x01 || key)[:4]; it must match the one named.
    const keyId = (await sha256(concat(enc.encode(name + "\n"), new Uint8Array([1]), pub))).slice(0, 4);
    if (!equal(keyId, hex(id))) throw new Error("the verifier key's id does not match its key");
    const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
    return { name, keyId, key };
  }

  // A signed checkpoint note: the text up to the last blank line, then signature lines
  // "— <name> base64(keyid[4] || signature[64])". Returns {treeSize, root} once the signature
  // by the trusted key checks out; throws otherwise.
  async function openCheckpoint(note, vkey) {
    const trusted = await parseKey(vkey);
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the note has no signature block");
    const text = note.slice(0, split + 1);
    let signed = false;
    for (const line of note.slice(split + 2).split("\n")) {
      if (!line) continue;
      const match = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!match || match[1] !== trusted.name) continue;
      const blob = b64(match[2]);
      if (blob.length !== 68 || !equal(blob.slice(0, 4), trusted.keyId)) continue;
      const ok = await crypto.subtle.verify({ name: "Ed25519" }, trusted.key, blob.slice(4), enc.encode(text));
      if (!ok) throw new Error("the checkpoint's signature does not verify");
      signed = true;
    }
    if (!signed) throw new Error("the checkpoint carries no signature by the trusted key");
    const [origin, size, root] = text.slice(0, -1).split("\n");
    if (origin !== trusted.name) throw new Error("the checkpoint is for another log");
    if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new Error("bad tree size");
    return { treeSize: Number(size), root: b64(root) };
  }

  return { b64, hex, verifyInclusion, openCheckpoint };
})();
