/* digitrec dashboard: reads /api/v1/dashboard and draws its charts as SVG, here in the browser.
   No library and no CDN; text from the server is set with textContent only. */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { data: null };
  const PALETTE = ["#0b5fff", "#e07000", "#0a7d38", "#8a2be2", "#c2185b", "#00838f", "#6d4c41", "#546e7a"];
  const WRONG = "#c62828";
  const CORRECTED = "#f9a825";

  /* Requests carry the session cookie (HttpOnly) made from the token typed into the token field. */
  async function api(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    if (response.status === 401) $("token-form").hidden = false;
    return response;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function pct(value, digits) {
    return value === null || value === undefined ? "–" : (value * 100).toFixed(digits === undefined ? 1 : digits) + " %";
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : "–";
  }

  function colorOf(version, versions) {
    const i = versions.indexOf(version);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }

  /* A vertical bar chart: each item has a label and stacked segments [{value, color, name}]. */
  function barChart(items, opts) {
    // The drawing is as wide as its box in CSS pixels, so labels keep their size on a phone.
    const W = Math.max(280, Math.min(1000, Math.round(opts.width || 640))), H = W < 500 ? 180 : 220;
    const left = 40, bottom = 26, top = 10;
    const max = Math.max(1, ...items.map((it) => it.segments.reduce((a, s) => a + s.value, 0)));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title, class: "chart-svg" });
    const plotW = W - left - 8, plotH = H - top - bottom;
    const step = plotW / Math.max(items.length, 1);
    const barW = Math.max(1, step * 0.8);
    for (const frac of [0, 0.5, 1]) {
      const y = top + plotH * (1 - frac);
      root.append(svg("line", { x1: left, x2: W - 8, y1: y, y2: y, stroke: "#d6dbe1" }));
      root.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, Math.round(max * frac)));
    }
    items.forEach((it, i) => {
      let y = top + plotH;
      const x = left + i * step + (step - barW) / 2;
      const group = svg("g", { class: "bar", "data-label": it.label });
      group.append(svg("title", {}, it.tip));
      for (const seg of it.segments) {
        if (!seg.value) continue;
        const h = (seg.value / max) * plotH;
        y -= h;
        group.append(svg("rect", { x: x, y: y, width: barW, height: Math.max(h, 0.5), fill: seg.color }));
      }
      root.append(group);
    });
    const maxLabels = Math.min(opts.maxLabels || 8, Math.max(3, Math.floor(W / 60)));
    const labelEvery = Math.max(1, Math.ceil(items.length / maxLabels));
    items.forEach((it, i) => {
      if (i % labelEvery !== 0) return;
      root.append(svg("text", { x: left + i * step + step / 2, y: H - 8, "text-anchor": "middle", class: "axis" },
        it.short));
    });
    return root;
  }

  function legend(entries) {
    const list = el("ul", { class: "legend" });
    for (const [name, color] of entries) {
      const item = el("li");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = color;
      item.append(swatch, document.createTextNode(name));
      list.append(item);
    }
    return list;
  }

  function renderTiles(d) {
    const t = d.totals;
    const tiles = [
      ["Predictions", t.count.toLocaleString("en")],
      ["Corrected", t.corrected.toLocaleString("en") + " (" + pct(t.corrected_share) + ")"],
      ["Corrected to another label", t.wrong.toLocaleString("en") + " (" + pct(t.wrong_share) + ")"],
      ["Implied accuracy", pct(t.implied_accuracy, 2)],
      ["Accuracy of reviewed", pct(t.reviewed_accuracy)],
      ["Readings (numbers)", (t.readings || 0).toLocaleString("en")],
      ["Refused", (t.refused || 0).toLocaleString("en") + " (" + pct(t.refused_share) + ")"],
      ["Serving now", d.serving_version || "not loaded"],
    ];
    const list = $("tiles");
    list.replaceChildren();
    for (const [name, value] of tiles) {
      const box = el("div", { class: "tile" });
      const shown = el("dd", { "data-tile": name });
      if (name === "Refused") {  // the refused records of this model, on /records
        const query = new URLSearchParams({ model: d.model, refused: "1" });
        if (d.version) query.set("version", d.version);
        shown.append(el("a", { href: "/records?" + query.toString() }, value));
      } else {
        shown.textContent = value;
      }
      box.append(el("dt", {}, name), shown);
      list.append(box);
    }
  }

  function renderVolume(d) {
    const hourly = d.days <= 2 && d.per_hour.length > 0;
    const series = hourly ? d.per_hour : d.per_day;
    const items = series.map((p) => ({
      label: p.t,
      short: hourly ? p.t.slice(11, 13) + "h" : p.t.slice(5),
      tip: `${p.t}${hourly ? ":00" : ""}: ${p.count} predictions, ${p.corrected} corrected, ${p.wrong} wrong`,
      segments: [
        { value: p.count - p.corrected, color: "#0b5fff" },
        { value: p.corrected - p.wrong, color: CORRECTED },
        { value: p.wrong, color: WRONG },
      ],
    }));
    const box = $("chart-volume");
    box.replaceChildren(
      el("p", { class: "detail" }, hourly ? "Per hour (UTC)" : "Per day (UTC)"),
      barChart(items, { title: "Predictions " + (hourly ? "per hour" : "per day"), width: box.clientWidth }),
      legend([["not corrected", "#0b5fff"], ["corrected, prediction confirmed", CORRECTED],
        ["corrected to another label", WRONG]]),
    );
  }

  function renderVersions(d) {
    const names = d.versions.map((v) => v.version);
    const items = d.versions_per_day.map((p) => ({
      label: p.t,
      short: p.t.slice(5),
      tip: p.t + ": " + (Object.entries(p.counts).map(([v, n]) => v + " " + n).join(", ") || "no predictions"),
      segments: names.map((v) => ({ value: p.counts[v] || 0, color: colorOf(v, names) })),
    }));
    $("chart-versions").replaceChildren(
      barChart(items, { title: "Predictions per day by model version", width: $("chart-versions").clientWidth }),
      legend(names.map((v) => [v, colorOf(v, names)])),
    );
    const body = $("versions").tBodies[0];
    body.replaceChildren();
    for (const v of d.versions) {
      const row = el("tr", { "data-version": v.version });
      row.append(el("td", {}, v.version + (v.version === d.serving_version ? " (serving)" : "")), el("td", {}, when(v.first)),
        el("td", {}, when(v.last)), el("td", {}, v.count.toLocaleString("en")),
        el("td", {}, v.corrected.toLocaleString("en")), el("td", {}, pct(v.implied_accuracy, 2)));
      body.append(row);
    }
    if (!d.versions.length) {
      const row = el("tr");
      row.append(el("td", { colspan: "6" }, "No predictions."));
      body.append(row);
    }
  }

  function renderConfidence(d) {
    const items = d.confidence_histogram.map((b) => ({
      label: b.from.toFixed(2),
      short: b.from.toFixed(1),
      tip: `confidence ${b.from.toFixed(2)}–${b.to.toFixed(2)}: ${b.count} predictions, ${b.wrong} corrected to another label`,
      segments: [
        { value: b.count - b.wrong, color: "#0b5fff" },
        { value: b.wrong, color: WRONG },
      ],
    }));
    $("chart-confidence").replaceChildren(
      barChart(items, { title: "Confidence histogram", maxLabels: 6, width: $("chart-confidence").clientWidth }),
      legend([["predictions", "#0b5fff"], ["corrected to another label", WRONG]]),
    );
  }

  function renderConfusion(d) {
    const table = $("confusion");
    const names = d.confusion.class_names;
    const matrix = d.confusion.matrix;
    const max = Math.max(1, ...matrix.flat());
    const head = el("tr");
    head.append(el("th", { scope: "col", class: "corner", title: "rows: predicted, columns: corrected to" },
      "said \u2193 was \u2192"));
    names.forEach((n, j) => head.append(el("th", { scope: "col", title: n }, String(j))));
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    matrix.forEach((row, i) => {
      const tr = el("tr");
      tr.append(el("th", { scope: "row", title: names[i] }, names[i] === String(i) ? String(i) : i + " " + names[i]));
      row.forEach((count, j) => {
        const cell = el("td", { "data-predicted": String(i), "data-corrected": String(j) }, count ? String(count) : "");
        if (count) {
          const strength = 0.15 + 0.85 * (count / max);
          cell.style.background = i === j ? `rgba(10, 125, 56, ${strength})` : `rgba(198, 40, 40, ${strength})`;
          if (strength > 0.55) cell.style.color = "#fff";
        }
        tr.append(cell);
      });
      tbody.append(tr);
    });
    table.replaceChildren(thead, tbody);
  }

  async function thumbnail(record) {
    // A reading shows its marks boxed (the preview); a one-digit record its stored input.
    const url = record.kind === "reading" ? record.preview_url : record.image_url;
    if (!url) return null;
    const response = await api(url);
    if (!response.ok) return null;
    return URL.createObjectURL(await response.blob());
  }

  async function correct(record, field, status) {
    if (field.value.trim() === "") {  // nothing chosen yet: a click alone must not store a confirmation
      status.textContent = "Choose what it was first.";
      field.focus();
      return;
    }
    status.textContent = "saving…";
    // A reading is corrected with the digits it shows, a one-digit record with its class.
    const body = record.kind === "reading" ? { text: field.value.trim() } : { label: Number(field.value) };
    const response = await api("/api/v1/records/" + encodeURIComponent(record.request_id) + "/correction", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let detail = String(response.status);
    if (!response.ok) {
      try { detail = (await response.json()).message || detail; } catch (e) { /* not JSON */ }
    }
    status.textContent = response.ok ? "saved" : "not saved (" + detail + ")";
  }

  function correctionField(record, names) {
    if (record.kind === "reading") {
      const input = el("input", { class: "reading-text", inputmode: "numeric", pattern: "[0-9]+", required: "",
        "aria-label": "the right digits", autocomplete: "off" });
      input.value = record.corrected_text || "";  // empty, as the label picker: typed, never confirmed by accident
      input.placeholder = record.text || "";
      return input;
    }
    // Starts empty (as on the drawing page), or at the correction already saved; never at the prediction.
    const select = el("select", { "aria-label": "correct label" });
    select.append(el("option", { value: "" }, "choose\u2026"));
    names.forEach((n, i) => select.append(el("option", { value: String(i) }, n === String(i) ? String(i) : i + " " + n)));
    select.value = record.corrected_label === null || record.corrected_label === undefined ? "" : String(record.corrected_label);
    return select;
  }

  function recordTitle(record, names) {
    if (record.kind === "reading") return "“" + (record.text || "") + "”";
    const label = record.label;
    return names[label] && names[label] !== String(label) ? label + " " + names[label] : String(label);
  }

  async function renderReview(d) {
    const list = $("review");
    const names = d.confusion.class_names;
    const items = await Promise.all(d.review.map(async (r) => {
      const item = el("li", { class: r.kind === "reading" ? "card reading" : "card", "data-record-id": r.request_id });
      const src = await thumbnail(r);
      const size = r.kind === "reading" ? { height: "56" } : { width: "56", height: "56" };
      if (src) item.append(el("img", { src: src, ...size, alt: "input of record " + r.request_id }));
      const text = el("div");
      const title = el("strong", {}, recordTitle(r, names) + " · " + pct(r.confidence));
      if (r.in_domain === false) title.append(" ", el("span", { class: "refused" }, "refused"));
      text.append(title, el("div", { class: "detail" }, r.model_version + ", " + when(r.request_time)));
      const form = el("form", { class: "correction" });
      const field = correctionField(r, names);
      const status = el("span", { class: "status" });
      form.append(field, el("button", { type: "submit" }, "save"), status);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        correct(r, field, status);
      });
      text.append(form);
      item.append(text);
      return item;
    }));
    list.replaceChildren(...items);
    if (!items.length) list.append(el("li", { class: "detail" }, "Nothing to review in this period."));
    const query = new URLSearchParams({ model: d.model, confidence_below: "0.5" });
    if (d.version) query.set("version", d.version);
    $("review-all").href = "/records?" + query.toString();
  }

  const ROLE_NAMES = { submitter: "submitters (own answer)", reviewer: "reviewers", admin: "admins",
    local: "local (open service)", unattributed: "before provenance" };

  async function setRejected(record, rejected, button, status) {
    const response = await api("/api/v1/records/" + encodeURIComponent(record.request_id) + "/correction/reject", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rejected: rejected }),
    });
    if (!response.ok) {
      status.textContent = "not changed (" + response.status + ")";
      return;
    }
    record.correction_rejected = rejected;
    status.textContent = rejected ? "rejected: fine-tuning skips it" : "";
    button.textContent = rejected ? "restore" : "reject";
  }

  async function renderCorrections(d) {
    const c = d.corrections;
    const tiles = $("by-role");
    tiles.replaceChildren();
    for (const [role, count] of Object.entries(c.by_role)) {
      const box = el("div", { class: "tile" });
      box.append(el("dt", {}, ROLE_NAMES[role] || role), el("dd", { "data-role": role }, count.toLocaleString("en")));
      tiles.append(box);
    }
    const rejected = el("div", { class: "tile" });
    rejected.append(el("dt", {}, "rejected by a reviewer"), el("dd", { "data-role": "rejected" }, String(c.rejected)));
    tiles.append(rejected);
    const names = d.confusion.class_names;
    const reviewer = d.role === "reviewer" || d.role === "admin";
    const items = await Promise.all(c.newest.map(async (r) => {
      const item = el("li", { class: r.kind === "reading" ? "card reading" : "card", "data-record-id": r.request_id });
      const src = await thumbnail(r);
      const size = r.kind === "reading" ? { height: "56" } : { width: "56", height: "56" };
      if (src) item.append(el("img", { src: src, ...size, alt: "input of record " + r.request_id }));
      const text = el("div");
      const said = recordTitle(r, names);
      const fixed = r.kind === "reading" ? "“" + (r.corrected_text || "") + "”" : String(r.corrected_label);
      text.append(el("strong", {}, said + " → " + fixed),
        el("div", { class: "detail" }, (ROLE_NAMES[r.corrected_by || "unattributed"] || r.corrected_by) +
          (r.corrected_client ? " " + r.corrected_client.slice(0, 6) : "") + ", " + when(r.request_time)));
      const status = el("span", { class: "status" }, r.correction_rejected ? "rejected: fine-tuning skips it" : "");
      if (reviewer) {
        const button = el("button", { type: "button", class: "reject" }, r.correction_rejected ? "restore" : "reject");
        button.addEventListener("click", () => setRejected(r, !r.correction_rejected, button, status));
        text.append(button);
      }
      text.append(status);
      item.append(text);
      return item;
    }));
    $("corrections").replaceChildren(...items);
    if (!items.length) $("corrections").append(el("li", { class: "detail" }, "No corrections in this period."));
  }

  function fillVersions(d) {
    const select = $("dash-version");
    const current = d.version || "";
    const known = new Set(Array.from(select.options).map((o) => o.value));
    for (const v of d.versions) {
      if (!known.has(v.version)) select.append(el("option", { value: v.version }, v.version));
    }
    if (current && !known.has(current) && !d.versions.some((v) => v.version === current)) {
      select.append(el("option", { value: current }, current));
    }
    select.value = current;
  }

  function params() {
    const query = new URLSearchParams();
    query.set("model", $("dash-model").value);
    if ($("dash-version").value) query.set("version", $("dash-version").value);
    query.set("days", $("dash-days").value);
    return query;
  }

  async function load() {
    const status = $("dash-status");
    status.textContent = "Loading…";
    const query = params();
    history.replaceState(null, "", "/dashboard?" + query.toString());
    let response;
    try {
      response = await api("/api/v1/dashboard?" + query.toString());
    } catch (e) {
      status.textContent = "The service did not answer: " + e;
      return;
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).message || message; } catch (e) { /* keep the status line */ }
      status.textContent = "Not shown: " + message;
      $("dash").hidden = true;
      return;
    }
    const d = await response.json();
    state.data = d;
    $("dash").hidden = false;
    fillVersions(d);
    renderTiles(d);
    renderVolume(d);
    renderVersions(d);
    renderConfidence(d);
    renderConfusion(d);
    await renderCorrections(d);
    await renderReview(d);
    let note = `${d.model}${d.version ? " " + d.version : ""}, ${d.first_day} to ${d.last_day} (UTC), ` +
      `${d.totals.count.toLocaleString("en")} predictions.`;
    if (d.truncated) note += ` Only the newest ${d.scanned.toLocaleString("en")} records were read (scan bound).`;
    status.textContent = note;
    document.body.dataset.loaded = d.generated_at;
  }

  function start() {
    if (document.body.dataset.page !== "dashboard") return;
    const initial = new URLSearchParams(location.search);
    if (initial.get("model")) $("dash-model").value = initial.get("model");
    if (initial.get("days")) $("dash-days").value = initial.get("days");
    if (initial.get("version")) {
      $("dash-version").append(el("option", { value: initial.get("version") }, initial.get("version")));
      $("dash-version").value = initial.get("version");
    }
    $("dash-form").addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    $("dash-model").addEventListener("change", () => {
      $("dash-version").replaceChildren(el("option", { value: "" }, "all versions"));
      load();
    });
    $("dash-days").addEventListener("change", load);
    let resizing = null;
    window.addEventListener("resize", () => {  // charts are drawn at the box's width: redraw on rotation
      clearTimeout(resizing);
      resizing = setTimeout(() => {
        if (!state.data) return;
        renderVolume(state.data);
        renderVersions(state.data);
        renderConfidence(state.data);
      }, 200);
    });
    $("dash-version").addEventListener("change", load);
    const tokenForm = $("token-form");
    tokenForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch("/api/v1/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: $("token").value.trim() }),
      });
      $("token").value = "";
      if (!response.ok) {
        $("dash-status").textContent = "That token was not accepted.";
        return;
      }
      tokenForm.hidden = true;
      load();
    });
    load();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
