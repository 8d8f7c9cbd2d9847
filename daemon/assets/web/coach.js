// Coach dashboard: live updates over server-sent events, fragment swaps,
// confirmations and keyboard shortcuts. Everything works without it but
// the live parts.
"use strict";
(function () {
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));

  // Re-render the page on the server and swap in every [data-refresh]
  // section, keeping focus and scroll where they are.
  let refreshing = null;
  function refresh() {
    if (refreshing) return;
    refreshing = setTimeout(async () => {
      try {
        // (Marked as a refresh: it does not keep an idle session alive.)
        const r = await fetch(location.href, { headers: { "Accept": "text/html", "X-Coach-Refresh": "1" }, credentials: "same-origin" });
        if (!r.ok) return;
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        for (const el of $$("[data-refresh]")) {
          const fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML && !el.contains(document.activeElement)) el.innerHTML = fresh.innerHTML;
        }
      } finally { refreshing = null; }
    }, 250);
  }

  function logLine(e) {
    const log = $("#log");
    if (!log) return;
    const li = document.createElement("li");
    li.className = e.level || "";
    li.textContent = (e.step ? "[" + e.step + "] " : "") + e.message;
    log.appendChild(li);
    while (log.children.length > 500) log.removeChild(log.firstChild);
    log.scrollTop = log.scrollHeight;
  }

  function progress(e) {
    const bar = $("#progress-bar");
    if (bar) bar.value = Math.round((e.fraction || 0) * 100);
    const text = $("#progress-text");
    if (text) text.textContent = e.step + ": " + Math.round((e.fraction || 0) * 100) + "% " + (e.message || "");
  }

  const live = document.body.dataset.live;
  if (live && "EventSource" in window) {
    const dot = $("#live-dot");
    const es = new EventSource(live);
    es.onopen = () => { if (dot) dot.classList.add("on"); document.body.dataset.liveOpen = String(Date.now()); };
    es.onerror = () => dot && dot.classList.remove("on");
    const on = (type, f) => es.addEventListener(type, (m) => { try { f(JSON.parse(m.data)); } catch (_) { } });
    on("progress", progress);
    on("log", logLine);
    // An epoch's metrics change only the charts: pages without them
    // do not re-render for each.
    if ($("#charts")) on("metric", refresh);
    for (const t of ["run.queued", "run.started", "step.started", "step.finished", "step.skipped",
      "workflow.loaded", "workflow.rejected", "experiment.results", "experiment.decided", "experiment.started"]) on(t, refresh);
    on("run.finished", () => { refresh(); if (document.body.dataset.reloadOnFinish) setTimeout(() => location.reload(), 400); });
    on("revoked", () => { es.close(); location.href = "/sign-in"; });
  }

  // Review: entities marked by selecting their words in the message. The
  // server gets byte offsets (UTF-8), one "entity<TAB>start<TAB>end" a line.
  const text = $("#review-text");
  if (text) {
    const field = $("#entities-field"), list = $("#entities"), name = $("#entity-name");
    const spans = [];
    const bytes = (s) => new TextEncoder().encode(s).length;
    const render = () => {
      field.value = spans.map((s) => [s.entity, s.start, s.end, s.value].join("\t")).join("\n");
      list.textContent = "";
      spans.forEach((s, i) => {
        const li = document.createElement("li");
        li.textContent = s.entity + ": " + s.value + " ";
        const rm = document.createElement("button");
        rm.type = "button"; rm.className = "secondary"; rm.textContent = "Remove " + s.entity;
        rm.addEventListener("click", () => { spans.splice(i, 1); render(); name.focus(); });
        li.appendChild(rm);
        list.appendChild(li);
      });
    };
    const mark = () => {
      const sel = window.getSelection();
      const full = text.dataset.text;
      if (!sel || sel.rangeCount === 0 || !name.value.trim()) { name.focus(); return; }
      const r = sel.getRangeAt(0);
      if (!text.contains(r.startContainer) || !text.contains(r.endContainer)) return;
      const pre = document.createRange();
      pre.selectNodeContents(text); pre.setEnd(r.startContainer, r.startOffset);
      const a = pre.toString().length, b = a + r.toString().length;
      if (b <= a) return;
      spans.push({ entity: name.value.replace(/[\t\r\n]+/g, " ").trim(), start: bytes(full.slice(0, a)), end: bytes(full.slice(0, b)), value: full.slice(a, b) });
      sel.removeAllRanges();
      render();
    };
    $("#mark").addEventListener("click", mark);
    document.addEventListener("keydown", (ev) => {
      if (ev.altKey && !ev.ctrlKey && !ev.metaKey) {
        const k = ev.key.toLowerCase();
        const click = (sel) => { const b = $(sel); if (b) { ev.preventDefault(); b.click(); } };
        if (k === "x") click("button[value=reject]");
        if (k === "s") click("#skip");
        if (k === "o") click("#oos");
        return;
      }
      if (ev.key === "m" && !/^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName)) { ev.preventDefault(); mark(); }
    });
  }

  // Data: a file dropped on the zone (or chosen) is sent whole; the
  // server answers with what it found, shown under the form.
  const upload = $("#upload");
  if (upload) {
    const input = $("#dataset-file"), zone = $("#drop"), out = $("#upload-result");
    const send = async () => {
      const file = input.files[0], name = $("#dataset-name").value.trim();
      if (!file || !name) { (name ? input : $("#dataset-name")).focus(); return; }
      out.textContent = "Checking " + file.name + " …";
      const q = "name=" + encodeURIComponent(name) + "&file=" + encodeURIComponent(file.name);
      try {
        const r = await fetch("/data/upload?" + q, { method: "POST", body: file, credentials: "same-origin",
          headers: { "X-CSRF-Token": upload.dataset.csrf, "Content-Type": "application/octet-stream" } });
        out.innerHTML = await r.text();
        if (r.ok) refresh();
      } catch (e) { out.textContent = "The upload failed: " + e; }
    };
    upload.addEventListener("submit", (ev) => { ev.preventDefault(); send(); });
    for (const t of ["dragenter", "dragover"]) zone.addEventListener(t, (ev) => { ev.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault(); zone.classList.remove("over");
      if (ev.dataTransfer && ev.dataTransfer.files.length) { input.files = ev.dataTransfer.files; send(); }
    });
  }

  // Forms that change something ask first when they say so.
  document.addEventListener("submit", (ev) => {
    const msg = ev.target.dataset.confirm;
    if (msg && !confirm(msg)) ev.preventDefault();
  });

  // Keyboard: g then o/w/r/m/c/v/e/d goes to a page; / finds; ? lists keys.
  const go = { o: "/", w: "/workflows", r: "/runs", m: "/models", c: "/conversations", v: "/review", e: "/experiments", d: "/data" };
  let g = false;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable) return;
    if (g && go[ev.key]) { location.href = go[ev.key]; g = false; ev.preventDefault(); return; }
    g = ev.key === "g";
    if (ev.key === "n" && $("#next-item")) { ev.preventDefault(); $("#next-item").click(); return; }
    if (ev.key === "/") { const s = $("input[type=search]"); if (s) { s.focus(); ev.preventDefault(); } }
    if (ev.key === "?") { const k = $("#keys"); if (k) { k.hidden = !k.hidden; } }
  });
})();
