// radgpt review and audit pages: plain JavaScript, no build step.
// The bearer token is asked for once and kept in sessionStorage (this tab only); every
// request goes to the JSON API with "Authorization: Bearer", so the API's roles and audit
// trail apply to everything shown here.  Data is only ever inserted with textContent.
"use strict";

(function () {
  const TOKEN_KEY = "radgpt.token";
  const AI_LABEL = "AI DRAFT — pending radiologist review";
  const body = document.body;
  const $ = (id) => document.getElementById(id);

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function say(text, kind) {
    const box = $("message");
    if (!box) return;
    box.textContent = text || "";
    box.className = "message" + (kind ? " " + kind : "");
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace("T", " ").slice(0, 19);
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || "HTTP " + status);
      this.status = status;
    }
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    headers.Authorization = "Bearer " + token();
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
    }
    const response = await fetch(path, {
      method: opts.method || "GET",
      headers: headers,
      body: opts.body,
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Your token was not accepted or has expired. Paste a new one.");
      throw new ApiError(401, "not signed in");
    }
    if (!response.ok) {
      let detail = "";
      try {
        const data = await response.json();
        detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      } catch (e) {
        detail = response.statusText;
      }
      throw new ApiError(response.status, detail);
    }
    return opts.raw ? response : response.json();
  }

  function explain(error) {
    if (error.status === 403) return "Your role does not allow this: " + error.message;
    if (error.status === 409) return "Already reviewed by someone else: " + error.message;
    return error.message;
  }

  // --- hashing (the server checks that the approved text is the text shown) ----------------

  function normalise(text) {
    return String(text || "").split(/\s+/).filter(Boolean).join(" ");
  }

  // SHA-256 in plain JavaScript: crypto.subtle exists only on https or localhost pages.
  function sha256Hex(text) {
    const bytes = new TextEncoder().encode(text);
    const K = new Uint32Array([
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
    const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const length = bytes.length;
    const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
    view.setUint32(padded.length - 4, (length << 3) >>> 0);
    const W = new Uint32Array(64);
    const rot = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) W[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rot(W[i - 15], 7) ^ rot(W[i - 15], 18) ^ (W[i - 15] >>> 3);
        const s1 = rot(W[i - 2], 17) ^ rot(W[i - 2], 19) ^ (W[i - 2] >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, h] = H;
      for (let i = 0; i < 64; i++) {
        const t1 = (h + (rot(e, 6) ^ rot(e, 11) ^ rot(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) >>> 0;
        const t2 = ((rot(a, 2) ^ rot(a, 13) ^ rot(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      H[0] += a; H[1] += b; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    }
    return Array.from(H, (x) => x.toString(16).padStart(8, "0")).join("");
  }

  function textSha(text) {
    return sha256Hex(normalise(text));
  }

  // --- sign in / out ----------------------------------------------------------------------

  function showLogin(message) {
    $("login").hidden = false;
    $("main").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
    $("token-input").focus();
  }

  // Each page is set up once; signing in again (e.g. after the token expired) only reloads
  // its data, so nothing typed on the page is lost.
  let refreshPage = null;

  async function start() {
    if (!token()) {
      showLogin("");
      return;
    }
    try {
      const me = await api("/api/me");
      $("who").textContent = me.name + " (" + me.roles.join(", ") + ")";
      $("sign-out").hidden = false;
      $("login").hidden = true;
      $("main").hidden = false;
      if (refreshPage) {
        await refreshPage(true);
      } else {
        refreshPage = (await (PAGES[body.dataset.page] || (async () => null))(me)) || null;
      }
    } catch (error) {
      if (error.status !== 401) {
        $("login").hidden = true;
        $("main").hidden = false;
        say(explain(error), "error");
      }
    }
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    start();
  });

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("Signed out.");
  });

  const PRIORITY_LABEL = { stat: "STAT", asap: "ASAP", urgent: "Urgent", routine: "Routine" };

  function priorityBadge(priority) {
    if (!priority) return el("span", "—");
    return el("span", PRIORITY_LABEL[priority] || priority, "badge prio-" + priority);
  }

  // --- review queue -----------------------------------------------------------------------

  async function queuePage() {
    const state = { page: 1, pageSize: 25, total: 0 };
    const form = $("queue-filters");

    async function load() {
      const params = new URLSearchParams();
      const status = $("f-status").value;
      if (status) params.set("status", status);
      if ($("f-priority").value) params.set("priority", $("f-priority").value);
      if ($("f-flag").value) params.set("flag", $("f-flag").value);
      if ($("f-modality").value.trim()) params.set("modality", $("f-modality").value.trim());
      if ($("f-age").value) params.set("max_age_hours", $("f-age").value);
      params.set("page", state.page);
      params.set("page_size", state.pageSize);
      try {
        const data = await api("/api/drafts?" + params.toString());
        state.total = data.total;
        render(data.items);
        const pages = Math.max(1, Math.ceil(data.total / state.pageSize));
        $("page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " drafts";
        $("prev-page").disabled = state.page <= 1;
        $("next-page").disabled = state.page >= pages;
        say("");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    function render(items) {
      const rows = $("queue-rows");
      rows.replaceChildren();
      if (!items.length) {
        const tr = el("tr");
        const td = el("td", "No drafts match.");
        td.colSpan = 9;
        tr.append(td);
        rows.append(tr);
        return;
      }
      for (const d of items) {
        const tr = el("tr", null, d.critical_flags ? "row-critical" : "");
        const prio = el("td");
        prio.append(priorityBadge(d.priority));
        tr.append(prio);
        tr.append(el("td", fmtTime(d.created_at)));
        tr.append(el("td", d.accession || "—"));
        const who = el("td");
        if (d.patient_name) { who.append(el("strong", d.patient_name)); who.append(el("br")); }
        who.append(el("span", d.patient_id || "—", "mrn"));
        tr.append(who);
        tr.append(el("td", d.modality || "—"));
        tr.append(el("td", d.procedure_display || d.procedure_code || "—"));
        const flags = el("td", d.flag_count ? String(d.flag_count) : "");
        if (d.critical_flags) flags.append(el("span", " critical", "badge critical"));
        tr.append(flags);
        const status = el("td");
        status.append(
          el("span", d.status === "pending_review" ? AI_LABEL : d.status,
             d.status === "pending_review" ? "badge ai" : "badge " + d.status)
        );
        tr.append(status);
        const open = el("td");
        const link = el("a", "Open");
        link.href = "/drafts/" + encodeURIComponent(d.id);
        link.setAttribute("aria-label", "Open draft for accession " + (d.accession || d.id));
        open.append(link);
        tr.append(open);
        rows.append(tr);
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.page = 1;
      load();
    });
    $("prev-page").addEventListener("click", () => { state.page -= 1; load(); });
    $("next-page").addEventListener("click", () => { state.page += 1; load(); });
    await load();
    return load;
  }

  // --- review screen ----------------------------------------------------------------------

  // Word-level diff (longest common subsequence): [["=", word], ["-", word], ["+", word]].
  function wordDiff(before, after) {
    const a = normalise(before).split(" ").filter(Boolean);
    const b = normalise(after).split(" ").filter(Boolean);
    const n = a.length, m = b.length;
    const L = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
      }
    }
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push(["=", a[i]]); i++; j++; }
      else if (L[i + 1][j] >= L[i][j + 1]) { out.push(["-", a[i]]); i++; }
      else { out.push(["+", b[j]]); j++; }
    }
    while (i < n) out.push(["-", a[i++]]);
    while (j < m) out.push(["+", b[j++]]);
    return out;
  }

  // Fill `node` with `text`, wrapping the given spans in <mark> (never innerHTML).
  function highlight(node, text, spans) {
    node.replaceChildren();
    const sorted = spans.slice().sort((x, y) => x.start - y.start || y.end - x.end);
    let at = 0;
    for (const span of sorted) {
      if (span.start < at) continue; // overlapping: the first one wins
      if (span.start > at) node.append(document.createTextNode(text.slice(at, span.start)));
      const mark = el("mark", text.slice(span.start, span.end), "evidence " + span.severity);
      mark.title = span.severity.toUpperCase() + ": " + span.kind.replace(/_/g, " ");
      mark.dataset.flag = String(span.flag);
      node.append(mark);
      at = span.end;
    }
    if (at < text.length) node.append(document.createTextNode(text.slice(at)));
  }

  async function reviewPage() {
    const id = body.dataset.draftId;
    const editor = $("impression");
    const WORK_KEY = "radgpt.work." + id;
    let draft = null;

    function typing(target) {
      return target && (target.tagName === "TEXTAREA" ||
        (target.tagName === "INPUT" && target.type !== "checkbox") ||
        target.tagName === "SELECT" || target.isContentEditable);
    }

    function savedWork() {
      try { return JSON.parse(sessionStorage.getItem(WORK_KEY) || "null"); } catch (e) { return null; }
    }

    function keepWork() {
      if (!draft || draft.status !== "pending_review") return;
      if (normalise(editor.value) === normalise(draft.draft_text)) sessionStorage.removeItem(WORK_KEY);
      else sessionStorage.setItem(WORK_KEY, JSON.stringify({ text: editor.value, draft_sha256: draft.draft_sha256 }));
    }

    function criticalFlags() {
      return draft ? draft.safety_flags.filter((f) => f.severity === "critical") : [];
    }

    function acknowledged() {
      return Array.from(document.querySelectorAll("#flag-list input.ack:checked"), (b) => Number(b.dataset.index));
    }

    function allAcknowledged() {
      const acks = new Set(acknowledged());
      return criticalFlags().every((f) => acks.has(f.index));
    }

    function updateApprove() {
      const pending = !!draft && draft.status === "pending_review";
      const ready = pending && allAcknowledged();
      $("approve").disabled = !ready;
      $("ack-note").hidden = !pending || criticalFlags().length === 0 || ready;
      $("approve").title = ready ? "" : (pending ? "Tick every critical flag first" : "");
    }

    function updateEdited() {
      if (!draft) return;
      const edited = normalise(editor.value) !== normalise(draft.draft_text);
      let label = "Impression — AI draft (unedited)";
      if (draft.status === "approved" || draft.status === "edited") label = "Impression — as signed";
      else if (draft.status !== "pending_review") label = "Impression — AI draft (" + draft.status + "; not a report)";
      else if (edited) label = "Impression — edited by you (differs from the AI draft)";
      $("impression-label").textContent = label;
      $("impression-title").className = edited ? "edited" : "";
      renderDiff();
    }

    function renderDiff() {
      const box = $("diff");
      box.replaceChildren();
      const parts = wordDiff(draft.draft_text, editor.value);
      if (parts.every((p) => p[0] === "=")) { box.append(el("span", "No changes: the text is the AI draft.", "help")); return; }
      for (const [op, word] of parts) {
        const node = op === "=" ? el("span", word) : el(op === "-" ? "del" : "ins", word);
        box.append(node);
        box.append(document.createTextNode(" "));
      }
    }

    function spansFor(where) {
      const spans = [];
      for (const f of draft.safety_flags) {
        for (const e of f.evidence || []) {
          if (e.text === where) spans.push({ start: e.start, end: e.end, severity: f.severity, kind: f.kind, flag: f.index });
        }
      }
      return spans;
    }

    function showContext(d) {
      const list = $("context-list");
      list.replaceChildren();
      const p = d.patient || {};
      const born = p.birth_date ? p.birth_date + (p.age_years !== null && p.age_years !== undefined ? " (" + p.age_years + " y)" : "") : null;
      const pairs = [
        ["Patient", p.name], ["Born", born], ["Sex", p.sex], ["MRN", d.patient_id],
        ["Accession", d.accession], ["Procedure", d.procedure_display || d.procedure_code],
        ["Priority", d.priority ? (PRIORITY_LABEL[d.priority] || d.priority) : null],
        ["Indication", d.indication], ["Ordering provider", d.ordering_provider],
        ["Study time", d.study_time ? fmtTime(d.study_time) : null],
      ];
      for (const [k, v] of pairs) {
        list.append(el("dt", k));
        const dd = el("dd", v === null || v === undefined || v === "" ? "—" : v);
        if (k === "Priority" && d.priority) { dd.replaceChildren(priorityBadge(d.priority)); }
        if (k === "Patient") dd.className = "patient-name";
        list.append(dd);
      }
    }

    function showDraft(d, restoreWork) {
      draft = d;
      const meta = [
        d.accession ? "Accession " + d.accession : null,
        d.patient_id ? "Patient " + d.patient_id : null,
        d.modality, d.procedure_display || d.procedure_code,
        "drafted " + fmtTime(d.created_at),
      ].filter(Boolean);
      $("draft-meta").textContent = meta.join(" · ");
      showContext(d);
      highlight($("findings"), d.findings, spansFor("findings"));
      highlight($("draft-view"), d.draft_text, spansFor("draft"));
      if (d.indication) {
        $("indication").hidden = false;
        $("indication").textContent = "Indication: " + d.indication;
      }
      const saved = savedWork();
      $("restored").hidden = true;
      if (d.status !== "pending_review") {
        sessionStorage.removeItem(WORK_KEY);
        editor.value = d.final_text || d.draft_text;
      } else if (saved && saved.draft_sha256 === d.draft_sha256 && restoreWork !== false) {
        editor.value = saved.text;
        $("restored").hidden = false;
        $("restored").textContent = "Your edit from this session was restored. Check it before approving.";
      } else {
        if (saved) sessionStorage.removeItem(WORK_KEY);
        editor.value = d.draft_text;
      }
      const acked = new Set(acknowledged());
      const list = $("flag-list");
      list.replaceChildren();
      for (const f of d.safety_flags) {
        const li = el("li", null, "flag " + f.severity);
        li.append(el("strong", f.severity === "critical" ? "CRITICAL" : "Warning", "sev"));
        li.append(el("span", " " + f.kind.replace(/_/g, " ") + ": "));
        if (f.phrase) li.append(el("mark", f.phrase));
        if (f.detail) li.append(el("span", " — " + f.detail));
        const where = (f.evidence || []).filter((e) => e.text === "findings").length;
        li.append(el("span", where ? " (highlighted in the findings)" : " (not found in the findings)", "help"));
        if (f.severity === "critical" && d.status === "pending_review") {
          const label = el("label", null, "ack");
          const box = el("input");
          box.type = "checkbox";
          box.className = "ack";
          box.id = "ack-" + f.index;
          box.dataset.index = String(f.index);
          box.checked = acked.has(f.index);
          box.addEventListener("change", updateApprove);
          label.append(box);
          label.append(document.createTextNode(" I have checked this flag against the findings"));
          li.append(el("br"));
          li.append(label);
        }
        list.append(li);
      }
      $("flags").hidden = d.safety_flags.length === 0;
      $("attestation").textContent = d.status === "pending_review" ? "By approving: “" + d.attestation + "”" : "";
      showCommunications(d);
      showPriors(d);
      showHistory(d);
      const prov = $("provenance");
      prov.replaceChildren();
      const pairs = [
        ["Model", d.model_id], ["Adapter", (d.adapter_id || "—") + (d.adapter_version ? " " + d.adapter_version : "")],
        ["Method", d.method === "extractive-fallback"
          ? "extractive fallback (no model draft passed the consistency checks; the report's own positive findings)"
          : "model draft (passed the consistency checks)"],
        ["Finish reason", d.finish_reason], ["Source", d.source.source_format + " " + (d.source.source_system || "")],
        ["Message id", d.source.message_id], ["Draft id", d.id], ["Version", d.version],
        ["Preliminary sent", d.published_at ? fmtTime(d.published_at) : "no"],
      ];
      for (const [k, v] of pairs) {
        prov.append(el("dt", k));
        prov.append(el("dd", v === null || v === undefined ? "—" : v));
      }
      setStatus(d);
      updateEdited();
    }

    function showCommunications(d) {
      const critical = d.safety_flags.some((f) => f.severity === "critical");
      $("communication").hidden = !critical && !d.communications.length;
      $("comm-form").hidden = d.status !== "pending_review";
      const list = $("comm-list");
      list.replaceChildren();
      for (const c of d.communications) {
        list.append(el("li", "To " + c.recipient + " by " + c.method.replace(/_/g, " ") + " at " +
          fmtTime(c.communicated_at) + " (recorded by " + c.by + ")"));
      }
      if (!$("comm-when").value) {
        const now = new Date(Date.now() - new Date().getTimezoneOffset() * 60000);
        $("comm-when").value = now.toISOString().slice(0, 16);
      }
    }

    function showPriors(d) {
      const rows = $("prior-rows");
      rows.replaceChildren();
      $("priors").hidden = !d.prior_reports.length;
      for (const p of d.prior_reports) {
        const tr = el("tr");
        tr.append(el("td", fmtTime(p.created_at)));
        tr.append(el("td", p.accession || "—"));
        tr.append(el("td", p.procedure || "—"));
        tr.append(el("td", p.reviewed ? p.status : p.status + " (AI draft, unsigned)"));
        tr.append(el("td", p.impression));
        rows.append(tr);
      }
    }

    function showHistory(d) {
      const list = $("history-list");
      list.replaceChildren();
      for (const h of d.history) {
        const li = el("li", null, "hist-" + h.action);
        li.append(el("span", fmtTime(h.at) + " · "));
        li.append(el("strong", h.action.replace(/_/g, " ")));
        li.append(el("span", " by " + h.actor + (h.outcome !== "success" ? " (" + h.outcome + ")" : "") +
          (h.detail ? " — " + h.detail : "")));
        list.append(li);
      }
    }

    function setStatus(d) {
      const pending = d.status === "pending_review";
      $("ai-label").textContent = pending ? AI_LABEL : "Reviewed: " + d.status;
      $("ai-label").className = "badge " + (pending ? "ai" : d.status);
      editor.readOnly = !pending;
      for (const b of ["reject", "focus-editor"]) $(b).disabled = !pending;
      let text = "";
      if (d.status === "approved") text = "Approved by " + d.reviewer + " — final report sent.";
      else if (d.status === "edited") text = "Edited and approved by " + d.reviewer + " (" + d.edit_distance + (d.edit_distance === 1 ? " word" : " words") + " changed) — final report sent.";
      else if (d.status === "rejected") text = "Rejected by " + d.reviewer + (d.reject_reason ? ": " + d.reject_reason : "");
      else if (d.status === "superseded") text = "Superseded by a newer report for this accession.";
      $("draft-status").textContent = text;
      $("draft-status").className = "status-line " + d.status;
      updateApprove();
    }

    async function approve() {
      if (!draft || draft.status !== "pending_review") return;
      if (!allAcknowledged()) {
        say("Tick every critical safety flag before approving.", "error");
        const first = document.querySelector("#flag-list input.ack:not(:checked)");
        if (first) first.focus();
        return;
      }
      const text = editor.value.trim();
      if (!text) { say("The impression must not be empty.", "error"); editor.focus(); return; }
      $("approve").disabled = true;
      say("Approving…");
      try {
        const result = await api("/api/drafts/" + encodeURIComponent(id) + "/approve", {
          method: "POST",
          json: {
            impression: text,
            expected_version: draft.version,
            acknowledged_flags: acknowledged(),
            attested: true,
            draft_sha256: draft.draft_sha256,
            impression_sha256: textSha(text),
          },
        });
        sessionStorage.removeItem(WORK_KEY);
        // Shown from the answer (no re-read): the approval is the last thing the reviewer did.
        Object.assign(draft, result, { final_text: result.final_text });
        draft.history = draft.history.concat([{
          at: result.reviewed_at, actor: result.reviewer, action: result.status, outcome: "success",
          detail: "edit distance: " + result.edit_distance + (result.published ? "; final report sent" : ""),
        }]);
        showDraft(draft, false);
        say(result.status === "edited" ? "Edited impression approved; final report sent." : "Approved; final report sent.", "ok");
        $("draft-status").focus();
      } catch (error) {
        updateApprove();
        if (error.status === 401) {
          keepWork();
          say("Not approved: your sign-in expired before the approval reached the server. " +
              "The draft is still pending and your text is kept — sign in again, check it and approve.", "error");
        } else {
          say(explain(error), "error");
        }
        if (error.status === 409) reload();
      }
    }

    function openReject() {
      if (!draft || draft.status !== "pending_review") return;
      $("reject-form").hidden = false;
      $("reject-reason").focus();
    }

    async function reject(event) {
      event.preventDefault();
      const reason = $("reject-reason").value.trim();
      if (!reason) { $("reject-reason").focus(); return; }
      try {
        const result = await api("/api/drafts/" + encodeURIComponent(id) + "/reject", {
          method: "POST",
          json: { reason: reason, category: $("reject-category").value, expected_version: draft.version },
        });
        sessionStorage.removeItem(WORK_KEY);
        $("reject-form").hidden = true;
        await reload(false);
        say(result.published ? "Draft rejected; the preliminary sent downstream was withdrawn." : "Draft rejected.", "ok");
      } catch (error) {
        if (error.status === 401) { keepWork(); say("Not rejected: your sign-in expired. Sign in again.", "error"); }
        else say(explain(error), "error");
        if (error.status === 409) reload();
      }
    }

    async function communicate(event) {
      event.preventDefault();
      const recipient = $("comm-recipient").value.trim();
      const when = $("comm-when").value;
      if (!recipient || !when) { say("Say to whom and when the result was communicated.", "error"); return; }
      try {
        await api("/api/drafts/" + encodeURIComponent(id) + "/communications", {
          method: "POST",
          json: { recipient: recipient, method: $("comm-method").value, communicated_at: new Date(when).toISOString() },
        });
        $("comm-recipient").value = "";
        keepWork();
        await reload();
        say("Communication recorded; it will be part of the final report.", "ok");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    async function reload(restoreWork, afterSignIn) {
      try {
        showDraft(await api("/api/drafts/" + encodeURIComponent(id)), restoreWork);
        if (afterSignIn && !$("restored").hidden) {
          say("Signed in again. Your edit was restored and the draft is still pending — check it, then approve.", "ok");
        }
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    $("approve").addEventListener("click", approve);
    $("reject").addEventListener("click", openReject);
    $("focus-editor").addEventListener("click", () => editor.focus());
    $("reject-form").addEventListener("submit", reject);
    $("comm-form").addEventListener("submit", communicate);
    $("reject-cancel").addEventListener("click", () => { $("reject-form").hidden = true; $("reject").focus(); });
    $("diff-toggle").addEventListener("click", () => {
      const open = $("diff-panel").hidden;
      $("diff-panel").hidden = !open;
      $("diff-toggle").setAttribute("aria-expanded", String(open));
      $("diff-toggle").textContent = open ? "Hide AI draft vs current text" : "Show AI draft vs current text";
    });
    editor.addEventListener("input", () => { keepWork(); updateEdited(); });
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); editor.blur(); $("approve").focus(); }
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); approve(); }
    });
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      if (!$("login").hidden) return;
      if (event.key === "a") { event.preventDefault(); approve(); }
      else if (event.key === "r") { event.preventDefault(); openReject(); }
      else if (event.key === "e") { event.preventDefault(); if (!editor.readOnly) editor.focus(); }
    });
    await reload();
    return (afterSignIn) => reload(true, afterSignIn);
  }

  // --- audit search -----------------------------------------------------------------------

  async function auditPage() {
    const state = { page: 1, pageSize: 50 };

    function filters() {
      const body = {};
      const add = (name, value) => { if (value) body[name] = value; };
      const since = $("a-since").value, until = $("a-until").value;
      if (since) add("since", new Date(since).toISOString());
      if (until) add("until", new Date(until).toISOString());
      add("actor", $("a-actor").value.trim());
      add("action", $("a-action").value);
      add("accession", $("a-accession").value.trim());
      add("patient_id", $("a-patient").value.trim());
      add("outcome", $("a-outcome").value);
      return body;
    }

    async function load() {
      const query = Object.assign(filters(), { page: state.page, page_size: state.pageSize });
      try {
        // Filters go in the body: patient ids never appear in URLs (proxy and server logs).
        const data = await api("/api/audit/search", { method: "POST", json: query });
        const rows = $("audit-rows");
        rows.replaceChildren();
        for (const r of data.items) {
          const tr = el("tr", null, r.outcome === "success" ? "" : "row-" + r.outcome);
          tr.append(el("td", r.id));
          tr.append(el("td", fmtTime(r.recorded_at)));
          tr.append(el("td", r.actor));
          tr.append(el("td", r.actor_role));
          tr.append(el("td", r.action));
          tr.append(el("td", r.outcome));
          tr.append(el("td", r.entity_type + " " + r.entity_id));
          tr.append(el("td", r.accession || ""));
          tr.append(el("td", r.patient_id || ""));
          tr.append(el("td", JSON.stringify(r.details), "details"));
          rows.append(tr);
        }
        const pages = Math.max(1, Math.ceil(data.total / state.pageSize));
        $("audit-page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " events" +
          (query.patient_id ? " · oldest first" : "");
        $("audit-prev").disabled = state.page <= 1;
        $("audit-next").disabled = state.page >= pages;
        say("");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    async function download(format) {
      const query = Object.assign(filters(), { format: format });
      try {
        const response = await api("/api/audit/export", { method: "POST", json: query, raw: true });
        const blob = await response.blob();
        const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
        const link = el("a");
        link.href = URL.createObjectURL(blob);
        link.download = match ? match[1] : "radgpt-audit." + (format === "csv" ? "csv" : "json");
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 10000);
        say("Export downloaded (" + format.toUpperCase() + ").", "ok");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    $("audit-filters").addEventListener("submit", (event) => { event.preventDefault(); state.page = 1; load(); });
    $("audit-prev").addEventListener("click", () => { state.page -= 1; load(); });
    $("audit-next").addEventListener("click", () => { state.page += 1; load(); });
    $("export-csv").addEventListener("click", () => download("csv"));
    $("export-fhir").addEventListener("click", () => download("fhir"));
    $("verify-chain").addEventListener("click", async () => {
      $("verify-result").textContent = "Verifying…";
      try {
        const r = await api("/api/audit/verify");
        $("verify-result").textContent = r.ok
          ? "Chain intact: " + r.checked + " events verified."
          : "TAMPERING DETECTED at event #" + r.first_broken_id + ": " + r.reason;
        $("verify-result").className = r.ok ? "ok" : "error";
      } catch (error) {
        $("verify-result").textContent = "";
        if (error.status !== 401) say(explain(error), "error");
      }
    });
    await load();
    return load;
  }

  const PAGES = { queue: queuePage, review: reviewPage, audit: auditPage };
  start();
})();
