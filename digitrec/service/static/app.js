/* digitrec page: draw on the canvas, predict, show bars and the 28x28 input, upload files,
   list the latest records, store corrections. Text from the server is set with textContent only. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  /* The token typed into the token field is exchanged for a session cookie (HttpOnly: this script never
     sees it again) and is not kept anywhere; requests carry the cookie on their own. */
  const state = { classNames: {}, lastId: null, lastKey: null };

  function showTokenForm() {
    const form = $("token-form");
    if (form) form.hidden = false;
  }

  async function api(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options || {}));
    if (response.status === 401) showTokenForm();
    return response;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return body.message || body.error || response.statusText;
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  function selectedModel() {
    const checked = document.querySelector('input[name="model"]:checked');
    return checked ? checked.value : "digits";
  }

  async function loadModels() {
    try {
      const response = await fetch("/api/v1/models");
      if (!response.ok) return;
      const body = await response.json();
      for (const model of body.models) {
        if (model.class_names) state.classNames[model.name] = model.class_names;
      }
    } catch (e) { /* the page still works with numbers only */ }
  }

  function title(label, name) {
    return name && name !== String(label) ? label + " " + name : String(label);
  }

  function className(model, label) {
    const names = state.classNames[model];
    return names ? names[label] : String(label);
  }

  /* ---------- canvas ---------- */
  function setupCanvas() {
    const canvas = $("pad");
    const ctx = canvas.getContext("2d");
    let drawing = false;
    let last = null;
    state.hasInk = false;

    function clear() {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      state.hasInk = false;
    }

    function point(event) {
      const rect = canvas.getBoundingClientRect();
      return {
        x: (event.clientX - rect.left) * (canvas.width / rect.width),
        y: (event.clientY - rect.top) * (canvas.height / rect.height),
      };
    }

    function stroke(from, to) {
      ctx.strokeStyle = "#000000";
      ctx.fillStyle = "#000000";
      ctx.lineWidth = 18;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
      state.hasInk = true;
    }

    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      drawing = true;
      last = point(event);
      stroke(last, last);
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      event.preventDefault();
      const next = point(event);
      stroke(last, next);
      last = next;
    });
    const stop = () => { drawing = false; last = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    canvas.addEventListener("pointerleave", stop);

    clear();
    return { canvas, clear };
  }

  /* ---------- result ---------- */
  function showResult(prediction) {
    state.lastId = prediction.request_id;
    state.lastKey = prediction.correction_key;  // lets this page correct its own answer without a token
    state.lastModel = prediction.model;
    $("answer").hidden = false;
    $("answer-label").textContent = String(prediction.label);
    $("answer-name").textContent = prediction.model === "digits" ? "" : prediction.name;
    $("answer-confidence").textContent = (prediction.confidence * 100).toFixed(1) + " %";
    $("answer-preview").src = prediction.preview_png;
    const bars = $("bars");
    bars.replaceChildren();
    prediction.probabilities.forEach((p, i) => {
      const item = document.createElement("li");
      if (i === prediction.label) item.className = "best";
      const name = document.createElement("span");
      name.className = "bar-name";
      name.textContent = className(prediction.model, i);
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = p;
      bar.setAttribute("aria-label", name.textContent);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = (p * 100).toFixed(1) + "%";
      item.append(name, bar, value);
      bars.append(item);
    });
    const select = $("correct-label");
    const placeholder = document.createElement("option");
    placeholder.value = "";  // nothing chosen yet: saving is refused until a class is picked
    placeholder.textContent = "choose\u2026";
    select.replaceChildren(placeholder);
    for (let i = 0; i < prediction.probabilities.length; i++) {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = prediction.model === "digits" ? String(i) : i + " " + className(prediction.model, i);
      select.append(option);
    }
    $("correction-status").textContent = "";
  }

  /* On a phone the result is below the canvas, out of sight: scroll to it unless the answer shows. */
  function bringIntoView(section, answer) {
    const box = answer.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) return;
    const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    section.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
  }

  async function predictCanvas(pad) {
    const status = $("status");
    if (!state.hasInk) {
      status.textContent = "Draw something first.";
      return;
    }
    status.textContent = "Predicting...";
    const blob = await new Promise((resolve) => pad.canvas.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("file", blob, "canvas.png");
    const model = selectedModel();
    try {
      const response = await fetch("/api/v1/predict?model=" + encodeURIComponent(model) + "&source=canvas",
        { method: "POST", body: form });
      if (!response.ok) {
        status.textContent = "Could not predict: " + (await errorText(response));
        return;
      }
      const body = await response.json();
      const prediction = body.predictions[0];
      status.textContent = "Prediction " + title(prediction.label, prediction.name) + " in " +
        Math.round(body.elapsed_ms) + " ms.";
      showResult(prediction);
      bringIntoView(document.querySelector(".result"), $("answer-label"));
      refreshLatest();
    } catch (e) {
      status.textContent = "The server did not answer: " + e.message;
    }
  }

  async function sendCorrection(event) {
    event.preventDefault();
    const out = $("correction-status");
    if (!state.lastId) return;
    const chosen = $("correct-label").value;
    if (chosen === "") {
      out.textContent = "Choose what it was first.";
      $("correct-label").focus();
      return;
    }
    const label = parseInt(chosen, 10);
    const response = await api("/api/v1/records/" + encodeURIComponent(state.lastId) + "/correction", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: label, correction_key: state.lastKey }),
    });
    out.textContent = response.ok ? "Thanks, saved: it was " + className(state.lastModel, label) + "."
      : "Not saved: " + (await errorText(response));
    if (response.ok) refreshLatest();
  }

  /* ---------- uploads ---------- */
  function card(imageSrc, title, detail) {
    const item = document.createElement("li");
    item.className = "card";
    if (imageSrc) {
      const img = document.createElement("img");
      img.src = imageSrc;
      img.alt = title;
      img.width = 56;
      img.height = 56;
      item.append(img);
    }
    const text = document.createElement("div");
    const strong = document.createElement("strong");
    strong.textContent = title;
    const small = document.createElement("span");
    small.className = "detail";
    small.textContent = detail;
    text.append(strong, document.createElement("br"), small);
    item.append(text);
    return item;
  }

  async function uploadFiles(files) {
    const list = $("upload-results");
    if (!files.length) return;
    const form = new FormData();
    for (const file of files) form.append("file", file, file.name);
    const model = selectedModel();
    let response;
    try {
      response = await fetch("/api/v1/predict?model=" + encodeURIComponent(model) + "&source=upload",
        { method: "POST", body: form });
    } catch (e) {
      list.prepend(card(null, "Upload failed", "The server did not answer: " + e.message));
      return;
    }
    let body = null;
    try { body = await response.clone().json(); } catch (e) { body = null; }
    if (!body || !Array.isArray(body.predictions)) {
      // the whole request was refused (one file, or a problem with the request itself)
      const name = files.length === 1 ? files[0].name + ": " : "";
      list.prepend(card(null, "Upload failed", name + await errorText(response)));
      return;
    }
    // one card per file, in the order chosen: predictions and errors carry the file's "index"
    const cards = [];
    body.predictions.forEach((p, i) => {
      cards[p.index ?? i] = card(p.preview_png, title(p.label, p.name),
        (p.file_name || "file") + " - " + (p.confidence * 100).toFixed(1) + " %");
    });
    for (const e of body.errors || []) {
      const failed = card(null, "Not predicted", e.message);
      failed.classList.add("failed");
      cards[e.index] = failed;
    }
    for (const item of cards.filter(Boolean).reverse()) list.prepend(item);
    if (body.predictions.length) refreshLatest();
  }

  function setupUploads() {
    const zone = $("dropzone");
    const input = $("files");
    input.addEventListener("change", () => { uploadFiles(Array.from(input.files)); input.value = ""; });
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      uploadFiles(Array.from(event.dataTransfer.files));
    });
  }

  /* ---------- latest records ---------- */
  async function thumbnail(record) {
    const url = record.preview_url || record.image_url;  // the 28x28 the model saw, white on black
    if (!url) return null;
    const response = await api(url);
    if (!response.ok) return null;
    return URL.createObjectURL(await response.blob());
  }

  async function refreshLatest() {
    const list = $("latest");
    if (!list) return;
    const response = await api("/api/v1/records?limit=8");
    if (!response.ok) {
      list.replaceChildren(card(null, "Records not shown", await errorText(response)));
      return;
    }
    const body = await response.json();
    const items = await Promise.all(body.records.map(async (r) => {
      const fixed = r.corrected_label === null || r.corrected_label === undefined ? ""
        : " (corrected: " + r.corrected_label + ")";
      const item = card(await thumbnail(r), title(r.label, r.class_name) + fixed,
        r.model_name + ", " + r.source + ", " + r.request_time.replace("T", " ").slice(0, 19));
      item.dataset.recordId = r.request_id;
      return item;
    }));
    list.replaceChildren(...items);
  }

  /* The token field (drawing and records pages): the token is sent once, for a session cookie. */
  function setupToken(onSession) {
    const form = $("token-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = $("token-status");
      const response = await fetch("/api/v1/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: $("token").value.trim() }),
      });
      $("token").value = "";
      if (!response.ok) {
        if (status) status.textContent = response.status === 401 ? "That token was not accepted." :
          "Not signed in: " + (await errorText(response));
        return;
      }
      form.hidden = true;
      onSession();
    });
  }

  /* ---------- records page ---------- */
  function startRecords() {
    // Signed in: the page is served again, now with the records (and the cookie loads the images).
    setupToken(() => location.reload());
  }

  function setupModelSwitch() {
    const title = document.querySelector(".intro h1");
    const aria = $("pad");
    document.querySelectorAll('input[name="model"]').forEach((radio) => {
      radio.addEventListener("change", () => {
        const digits = selectedModel() === "digits";
        title.textContent = digits ? "Draw a digit" : "Draw a piece of clothing";
        aria.setAttribute("aria-label", digits ? "Drawing area: draw one digit here"
          : "Drawing area: draw one piece of clothing here");
      });
    });
  }

  function start() {
    if (document.body.dataset.page === "records") startRecords();
    if (document.body.dataset.page !== "draw") return;
    const pad = setupCanvas();
    $("predict").addEventListener("click", () => predictCanvas(pad));
    $("clear").addEventListener("click", () => {
      pad.clear();
      $("answer").hidden = true;
      $("status").textContent = "Cleared. Draw again and press predict it.";
    });
    $("correction").addEventListener("submit", sendCorrection);
    setupUploads();
    setupToken(refreshLatest);
    setupModelSwitch();
    loadModels();
    refreshLatest();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
