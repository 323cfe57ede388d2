// The console page: sign-in, views drawn by htmx from /console/views/*, changes sent to the
// REST API (so they take the command path and are logged), charts, and proofs checked here.
//
// The bearer token lives in sessionStorage: for this tab only, gone when it closes or on sign
// out, and sent as an Authorization header, never in a URL.
"use strict";

(() => {
  const KEY = "govern.token";
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  let current = null; // the URL of the view on screen, to redraw it after a change

  const token = () => sessionStorage.getItem(KEY);

  function banner(message, kind = "error") {
    const el = $("#banner");
    el.textContent = message;
    el.className = kind;
    el.hidden = !message;
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    current = null;
    $("#main").replaceChildren();
    $("#nav").replaceChildren();
    $("#app").hidden = true;
    $("#sign-out").hidden = true;
    $("#who").textContent = "";
    $("#sign-in").hidden = false;
    $("#sign-in-message").textContent = message || "";
    banner("");
  }

  // The one JSON error shape {"error", "message", "details"}, whatever answered.
  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") return `${body.message} (${body.error}, ${response.status})`;
    } catch (_) { /* not JSON: fall through */ }
    return `the gateway answered ${response.status}`;
  }

  async function api(method, url, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (_) {
      throw new Error("the gateway could not be reached (network error)");
    }
    if (response.status === 401) {
      signOut(`Signed out: ${await errorMessage(response)}`);
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(await errorMessage(response));
    return response.status === 204 ? null : response.json();
  }

  function show(url) {
    current = url;
    banner("");
    return htmx.ajax("GET", url, { target: "#main", swap: "innerHTML" });
  }

  async function enter() {
    $("#sign-in").hidden = true;
    let response;
    try {
      response = await fetch("/console/views/nav", { headers: { Authorization: `Bearer ${token()}` } });
    } catch (_) {
      signOut("The gateway could not be reached (network error); try again.");
      return;
    }
    if (response.status === 401) return signOut(`That token was refused: ${await errorMessage(response)}`);
    $("#app").hidden = false;
    $("#sign-out").hidden = false;
    if (!response.ok) {
      $("#nav").replaceChildren();
      const page = document.createElement("section");
      page.className = "forbidden";
      const h = document.createElement("h1");
      h.textContent = response.status === 403 ? "403: not for this role" : `Error ${response.status}`;
      const p = document.createElement("p");
      p.textContent = await errorMessage(response);
      page.append(h, p);
      $("#main").replaceChildren(page);
      return;
    }
    $("#nav").innerHTML = await response.text();
    const who = $(".nav-who", $("#nav"));
    $("#who").textContent = who ? who.textContent : "";
    const first = $("[data-view]", $("#nav"));
    if (first) show(`/console/views/${first.dataset.view}`);
  }

  // -- htmx: the token on every request, errors as messages, never half a view --------------

  document.addEventListener("htmx:configRequest", (e) => {
    e.detail.headers["Authorization"] = `Bearer ${token()}`;
  });
  // The newest request for #main wins: an older one that answers later (a slow view, then a
  // click elsewhere) must not draw over it, nor blank it with its error.
  let latest = null;
  const forMain = (e) => e.detail.target && e.detail.target.id === "main";
  const stale = (e) => forMain(e) && e.detail.xhr !== latest;

  document.addEventListener("htmx:beforeRequest", (e) => {
    if (!forMain(e)) return;
    latest = e.detail.xhr;
    const path = e.detail.requestConfig && e.detail.requestConfig.path;
    if (path) current = path;
  });
  document.addEventListener("htmx:beforeSwap", (e) => {
    if (stale(e)) e.detail.shouldSwap = false;
  });
  document.addEventListener("htmx:responseError", async (e) => {
    if (stale(e)) return;
    const xhr = e.detail.xhr;
    let message = `the gateway answered ${xhr.status}`;
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && typeof body.message === "string") message = `${body.message} (${body.error}, ${xhr.status})`;
    } catch (_) { /* keep the generic message */ }
    if (xhr.status === 401) return signOut(`Signed out: ${message}`);
    $("#main").replaceChildren();
    banner(message);
  });
  document.addEventListener("htmx:sendError", (e) => {
    if (stale(e)) return;
    $("#main").replaceChildren();
    banner("The gateway could not be reached (network error); nothing is shown until it answers.");
  });
  document.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target && e.detail.target.id === "main") initView(e.detail.target);
  });

  // -- what a view needs once drawn -------------------------------------------------------

  function initView(root) {
    for (const el of $$("[data-chart]", root)) drawChart(el);
    if ($("tr.entry", root)) verifyRows(root);
    if ($("#head-signature", root)) verifyHead(root);
  }

  function drawChart(el) {
    const data = JSON.parse(document.getElementById(el.dataset.chart).textContent);
    const colors = (el.dataset.colors || "").split(",");
    const series = [{}].concat(data.series.map((s, i) => ({ label: s.label, stroke: colors[i] || "#555", width: 2 })));
    const width = Math.max(320, el.clientWidth || 800);
    new uPlot({ width, height: 240, series, axes: [{}, { label: "decisions / min" }] },
      [data.x].concat(data.series.map((s) => s.values)), el);
  }

  let head = null; // {treeSize, root}, from a checkpoint whose signature checked out here

  async function signedHead() {
    const [cp, key] = await Promise.all([api("GET", "/v1/ledger/checkpoint"), api("GET", "/v1/ledger/key")]);
    return GovernVerify.openCheckpoint(cp.note, key.vkey);
  }

  function mark(cell, ok, text) {
    cell.dataset.state = ok ? "verified" : "failed";
    cell.textContent = text;
    cell.className = ok ? "proof ok" : "proof bad";
  }

  async function verifyEntry(index, leaf) {
    const proof = await api("GET", `/v1/ledger/entries/${index}/proof?tree_size=${head.treeSize}`);
    return GovernVerify.verifyInclusion(leaf, index, head.treeSize, proof.hashes.map(GovernVerify.hex), head.root);
  }

  async function verifyRows(root) {
    const status = $("#proof-status", root);
    try {
      head = await signedHead();
    } catch (err) {
      for (const cell of $$("td.proof", root)) mark(cell, false, "no signed head");
      if (status) { status.textContent = `Checkpoint not verified: ${err.message}`; status.dataset.proofs = "failed"; }
      return;
    }
    let failed = 0;
    for (const row of $$("tr.entry", root)) {
      const cell = $("td.proof", row);
      const index = Number(row.dataset.index);
      if (index >= head.treeSize) { mark(cell, false, "beyond the head"); failed++; continue; }
      try {
        const ok = await verifyEntry(index, GovernVerify.b64(row.dataset.leaf));
        mark(cell, ok, ok ? "verified" : "FAILED");
        if (!ok) { failed++; row.classList.add("tampered"); }
      } catch (err) {
        mark(cell, false, `error: ${err.message}`);
        failed++;
      }
    }
    if (status) {
      status.dataset.proofs = failed ? "failed" : "verified";
      status.textContent = failed
        ? `${failed} entr${failed === 1 ? "y" : "ies"} FAILED verification against the signed checkpoint of size ${head.treeSize}.`
        : `Every entry shown verified against the signed checkpoint of size ${head.treeSize}.`;
      status.className = failed ? "bad" : "ok";
    }
  }

  async function verifyHead(root) {
    const cell = $("#head-signature", root);
    try {
      head = await signedHead();
      cell.textContent = `verified here (Ed25519), tree size ${head.treeSize}`;
      cell.className = "ok";
      cell.dataset.state = "verified";
    } catch (err) {
      cell.textContent = `NOT verified: ${err.message}`;
      cell.className = "bad";
      cell.dataset.state = "failed";
    }
  }

  async function verifyRange(form) {
    const out = $("#verify-range-result");
    const from = Number(form.elements.from.value), to = Number(form.elements.to.value);
    out.className = "result";
    out.textContent = "verifying ...";
    try {
      head = await signedHead();
      if (!(from >= 0 && to > from && to <= head.treeSize)) throw new Error(`choose 0 <= from < to <= ${head.treeSize}`);
      const failed = [];
      let checked = 0;
      // Roles that read only their own entries get (and check) only those.
      for (let start = from; start < to; ) {
        const page = await api("GET", `/v1/ledger/entries?start=${start}&limit=${Math.min(1000, to - start)}`);
        for (const e of page.entries) {
          if (e.index >= to) break;
          checked++;
          if (!(await verifyEntry(e.index, GovernVerify.b64(e.leaf)))) failed.push(e.index);
        }
        if (page.next === null || page.next === undefined || page.next >= to) break;
        start = page.next;
      }
      out.className = failed.length ? "result bad" : "result ok";
      out.textContent = failed.length
        ? `FAILED: entries ${failed.slice(0, 20).join(", ")} do not match the signed checkpoint of size ${head.treeSize}`
        : `${checked} entr${checked === 1 ? "y" : "ies"} between ${from} and ${to - 1} verified against the signed checkpoint of size ${head.treeSize}`;
    } catch (err) {
      out.className = "result bad";
      out.textContent = err.message;
    }
  }

  // -- changes, through the REST API ------------------------------------------------------

  function result(form, message, ok) {
    const el = $(".result", form);
    el.textContent = message;
    el.className = ok ? "result ok" : "result bad";
  }

  async function policy(form, action) {
    let rules;
    try {
      rules = JSON.parse(form.elements.rules.value);
    } catch (err) {
      throw new Error(`the rules are not JSON: ${err.message}`);
    }
    const model = form.elements.model.value.trim() || null;
    if (action === "simulate") {
      const sim = await api("POST", "/v1/policies/simulate", { rules, model });
      const box = $(".result", form);
      box.className = "result";
      box.replaceChildren();
      const p = document.createElement("p");
      p.className = "ok";
      p.textContent = sim.changes.length
        ? `${sim.changes.length} change(s) against version ${sim.current_version}:`
        : `no principal would gain or lose a row or a column against version ${sim.current_version}`;
      box.append(p);
      if (sim.changes.length) box.append(changesTable(sim.changes));
      return null;
    }
    const saved = await api("PUT", "/v1/policies", { rules, model });
    return `saved as version ${saved.version}`;
  }

  function changesTable(changes) {
    const table = document.createElement("table");
    const cols = ["principal", "role", "dataset", "purpose", "before", "after", "rows_gained", "rows_lost", "columns_unmasked", "columns_masked"];
    const head = table.createTHead().insertRow();
    for (const c of cols) { const th = document.createElement("th"); th.textContent = c.replace("_", " "); head.append(th); }
    const body = table.createTBody();
    for (const change of changes) {
      const row = body.insertRow();
      for (const c of cols) row.insertCell().textContent = Array.isArray(change[c]) ? change[c].join(", ") : String(change[c]);
    }
    return table;
  }

  const ACTIONS = {
    "set-tags": async (form) => {
      const tags = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      const { dataset, column } = form.dataset;
      await api("PUT", `/v1/datasets/${encodeURIComponent(dataset)}/columns/${encodeURIComponent(column)}/tags`, { tags });
      return `tags of ${column} saved`;
    },
    "accept-version": async (form) => {
      const { dataset, version } = form.dataset;
      await api("POST", `/v1/datasets/${encodeURIComponent(dataset)}/versions/${encodeURIComponent(version)}/accept`);
      return `version ${version} accepted`;
    },
    "decide-review": async (form) => {
      await api("POST", `/v1/reviews/${encodeURIComponent(form.dataset.review)}`, {
        verdict: form.elements.verdict.value,
        note: form.elements.note.value,
      });
      return "decided";
    },
    "request-erasure": async (form) => {
      const names = form.elements.datasets.value.split(",").map((d) => d.trim()).filter(Boolean);
      const made = await api("POST", "/v1/erasure-requests", {
        subject_id: form.elements.subject_id.value,
        datasets: names.length ? names : null,
        legal_basis: form.elements.legal_basis.value,
      });
      current = `/console/views/erasure?id=${encodeURIComponent(made.id)}`;
      return `request ${made.id}: ${made.state}`;
    },
  };

  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (form.id === "sign-in-form") {
      e.preventDefault();
      const value = form.elements.token.value.trim();
      form.reset();
      if (!value) return;
      sessionStorage.setItem(KEY, value);
      return enter();
    }
    if (form.id === "verify-range") { e.preventDefault(); return verifyRange(form); }
    const action = form.dataset.action;
    if (!action) return; // an htmx search form: htmx handles it
    e.preventDefault();
    const button = e.submitter;
    try {
      const message = action === "policy" ? await policy(form, button ? button.value : "simulate") : await ACTIONS[action](form);
      if (message === null) return; // a simulation: its result stays on the page
      result(form, message, true);
      if (current) setTimeout(() => show(current).then(() => banner(message, "ok")), 300);
    } catch (err) {
      if (err.message !== "signed out") result(form, err.message, false);
    }
  });

  document.addEventListener("click", (e) => {
    const link = e.target.closest("[data-view]");
    if (link && link.closest("#nav")) {
      e.preventDefault();
      show(`/console/views/${link.dataset.view}`);
    }
    if (e.target.id === "sign-out") signOut("Signed out.");
  });

  document.addEventListener("DOMContentLoaded", () => {
    if (token()) enter(); else signOut("");
  });
})();
