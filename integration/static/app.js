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

  // --- sign in / out ----------------------------------------------------------------------

  function showLogin(message) {
    $("login").hidden = false;
    $("main").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
    $("token-input").focus();
  }

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
      await (PAGES[body.dataset.page] || (() => undefined))(me);
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

  // --- review queue -----------------------------------------------------------------------

  async function queuePage() {
    const state = { page: 1, pageSize: 25, total: 0 };
    const form = $("queue-filters");

    async function load() {
      const params = new URLSearchParams();
      const status = $("f-status").value;
      if (status) params.set("status", status);
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
        td.colSpan = 8;
        tr.append(td);
        rows.append(tr);
        return;
      }
      for (const d of items) {
        const tr = el("tr");
        tr.append(el("td", fmtTime(d.created_at)));
        tr.append(el("td", d.accession || "—"));
        tr.append(el("td", d.patient_id || "—"));
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
  }

  // --- review screen ----------------------------------------------------------------------

  async function reviewPage() {
    const id = body.dataset.draftId;
    const editor = $("impression");
    let draft = null;

    function typing(target) {
      return target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" ||
        target.tagName === "SELECT" || target.isContentEditable);
    }

    function showDraft(d) {
      draft = d;
      const meta = [
        d.accession ? "Accession " + d.accession : null,
        d.patient_id ? "Patient " + d.patient_id : null,
        d.modality, d.procedure_display || d.procedure_code,
        "drafted " + fmtTime(d.created_at),
      ].filter(Boolean);
      $("draft-meta").textContent = meta.join(" · ");
      $("findings").textContent = d.findings;
      if (d.indication) {
        $("indication").hidden = false;
        $("indication").textContent = "Indication: " + d.indication;
      }
      editor.value = d.final_text || d.draft_text;
      const list = $("flag-list");
      list.replaceChildren();
      for (const f of d.safety_flags) {
        const li = el("li", null, "flag " + f.severity);
        li.append(el("strong", f.severity === "critical" ? "CRITICAL" : "Warning", "sev"));
        li.append(el("span", " " + f.kind.replace(/_/g, " ") + ": "));
        if (f.phrase) li.append(el("mark", f.phrase));
        if (f.detail) li.append(el("span", " — " + f.detail));
        list.append(li);
      }
      $("flags").hidden = d.safety_flags.length === 0;
      const prov = $("provenance");
      prov.replaceChildren();
      const pairs = [
        ["Model", d.model_id], ["Adapter", (d.adapter_id || "—") + (d.adapter_version ? " " + d.adapter_version : "")],
        ["Finish reason", d.finish_reason], ["Source", d.source.source_format + " " + (d.source.source_system || "")],
        ["Message id", d.source.message_id], ["Draft id", d.id], ["Version", d.version],
      ];
      for (const [k, v] of pairs) {
        prov.append(el("dt", k));
        prov.append(el("dd", v === null || v === undefined ? "—" : v));
      }
      setStatus(d);
    }

    function setStatus(d) {
      const pending = d.status === "pending_review";
      $("ai-label").textContent = pending ? AI_LABEL : "Reviewed: " + d.status;
      $("ai-label").className = "badge " + (pending ? "ai" : d.status);
      editor.readOnly = !pending;
      for (const b of ["approve", "reject", "focus-editor"]) $(b).disabled = !pending;
      let text = "";
      if (d.status === "approved") text = "Approved by " + d.reviewer + " — final report sent.";
      else if (d.status === "edited") text = "Edited and approved by " + d.reviewer + " (" + d.edit_distance + (d.edit_distance === 1 ? " word" : " words") + " changed) — final report sent.";
      else if (d.status === "rejected") text = "Rejected by " + d.reviewer + (d.reject_reason ? ": " + d.reject_reason : "");
      else if (d.status === "superseded") text = "Superseded by a newer report for this accession.";
      $("draft-status").textContent = text;
      $("draft-status").className = "status-line " + d.status;
    }

    async function approve() {
      if (!draft || draft.status !== "pending_review") return;
      const text = editor.value.trim();
      if (!text) { say("The impression must not be empty.", "error"); editor.focus(); return; }
      $("approve").disabled = true;
      say("Approving…");
      try {
        const result = await api("/api/drafts/" + encodeURIComponent(id) + "/approve", {
          method: "POST",
          json: { impression: text, expected_version: draft.version },
        });
        Object.assign(draft, result);
        showDraft(draft);
        say(result.status === "edited" ? "Edited impression approved; final report sent." : "Approved; final report sent.", "ok");
        $("draft-status").focus();
      } catch (error) {
        $("approve").disabled = false;
        if (error.status !== 401) say(explain(error), "error");
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
        draft.status = result.status;
        draft.reviewer = result.reviewer;
        draft.reject_reason = reason;
        $("reject-form").hidden = true;
        setStatus(draft);
        say("Draft rejected.", "ok");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
        if (error.status === 409) reload();
      }
    }

    async function reload() {
      try {
        showDraft(await api("/api/drafts/" + encodeURIComponent(id)));
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    $("approve").addEventListener("click", approve);
    $("reject").addEventListener("click", openReject);
    $("focus-editor").addEventListener("click", () => editor.focus());
    $("reject-form").addEventListener("submit", reject);
    $("reject-cancel").addEventListener("click", () => { $("reject-form").hidden = true; $("reject").focus(); });
    editor.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.preventDefault(); editor.blur(); $("approve").focus(); }
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); approve(); }
    });
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      if (event.key === "a") { event.preventDefault(); approve(); }
      else if (event.key === "r") { event.preventDefault(); openReject(); }
      else if (event.key === "e") { event.preventDefault(); if (!editor.readOnly) editor.focus(); }
    });
    await reload();
  }

  // --- audit search -----------------------------------------------------------------------

  async function auditPage() {
    const state = { page: 1, pageSize: 50 };

    function filters() {
      const params = new URLSearchParams();
      const add = (name, value) => { if (value) params.set(name, value); };
      const since = $("a-since").value, until = $("a-until").value;
      if (since) add("since", new Date(since).toISOString());
      if (until) add("until", new Date(until).toISOString());
      add("actor", $("a-actor").value.trim());
      add("action", $("a-action").value);
      add("accession", $("a-accession").value.trim());
      add("patient_id", $("a-patient").value.trim());
      add("outcome", $("a-outcome").value);
      return params;
    }

    async function load() {
      const params = filters();
      params.set("page", state.page);
      params.set("page_size", state.pageSize);
      try {
        const data = await api("/api/audit?" + params.toString());
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
        $("audit-page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " events";
        $("audit-prev").disabled = state.page <= 1;
        $("audit-next").disabled = state.page >= pages;
        say("");
      } catch (error) {
        if (error.status !== 401) say(explain(error), "error");
      }
    }

    async function download(format) {
      const params = filters();
      params.set("format", format);
      try {
        const response = await api("/api/audit/export?" + params.toString(), { raw: true });
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
  }

  const PAGES = { queue: queuePage, review: reviewPage, audit: auditPage };
  start();
})();
