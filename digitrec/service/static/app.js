/* digitrec page: draw on the canvas, predict one digit or read a number, show bars, the 28x28 input
   and a box over each digit read, upload files, list the latest records, store corrections.
   Text from the server is set with textContent only. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  /* The token typed into the token field is exchanged for a session cookie (HttpOnly: this script never
     sees it again) and is not kept anywhere; requests carry the cookie on their own. */
  const state = { classNames: {}, lastId: null, lastKey: null, mode: "digit" };
  const PAD_SIZES = { digit: [280, 280], number: [560, 280] };  // a number needs room for a row of digits

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

  function percent(p) {
    return (p * 100).toFixed(1) + " %";
  }

  /* What the page says when the model finds a mark is none of its classes. */
  function notInDomain(model) {
    return model === "fashion" ? "That doesn't look like a piece of clothing."
      : "That doesn't look like a digit.";
  }

  /* ---------- canvas ---------- */
  function setupCanvas() {
    const canvas = $("pad");
    const overlay = $("overlay");
    const ctx = canvas.getContext("2d");
    let drawing = false;
    let last = null;
    state.hasInk = false;

    function clearOverlay() {
      overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
    }

    function clear() {
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      clearOverlay();
      state.hasInk = false;
    }

    /* Changing a canvas's size wipes it: only done when switching between a digit and a number. */
    function resize(width, height) {
      if (canvas.width === width && canvas.height === height) return;
      canvas.width = overlay.width = width;
      canvas.height = overlay.height = height;
      clear();
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
      clearOverlay();  // the boxes belonged to the drawing before this stroke
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
    return { canvas, overlay, clear, clearOverlay, resize };
  }

  /* A box and the label over each digit read (and a dashed one over each refused mark), in the
     canvas's own pixels: the boxes the server sends are in the pixels of the PNG the canvas made. */
  function drawBoxes(pad, reading) {
    pad.clearOverlay();
    const g = pad.overlay.getContext("2d");
    const font = Math.max(16, Math.round(pad.overlay.height / 10));
    g.font = "bold " + font + "px system-ui, sans-serif";
    g.textBaseline = "bottom";
    const mark = (box, text, colour, dashed) => {
      g.setLineDash(dashed ? [8, 6] : []);
      g.lineWidth = 3;
      g.strokeStyle = colour;
      g.strokeRect(box.x, box.y, box.width, box.height);
      const width = g.measureText(text).width + 8;
      const top = box.y >= font + 4 ? box.y - font - 4 : box.y + box.height;
      g.fillStyle = colour;
      g.fillRect(box.x, top, width, font + 4);
      g.fillStyle = "#ffffff";
      g.fillText(text, box.x + 4, top + font + 2);
    };
    for (const digit of reading.digits) mark(digit.box, digit.name, "#0b5fff", false);
    for (const refused of reading.refused) mark(refused.box, "?", "#c62828", true);
  }

  /* ---------- result ---------- */
  function showResult(prediction) {
    state.lastId = prediction.request_id;
    state.lastKey = prediction.correction_key;  // lets this page correct its own answer without a token
    state.lastModel = prediction.model;
    $("reading").hidden = true;
    $("answer").hidden = false;
    const refused = prediction.in_domain === false;
    $("answer-refused").hidden = !refused;
    $("answer-refused").textContent = refused ? notInDomain(prediction.model) : "";
    $("answer-big").hidden = refused;  // no confident answer for a mark that is none of the classes
    $("answer-label").textContent = String(prediction.label);
    $("answer-name").textContent = prediction.model === "digits" ? "" : prediction.name;
    $("answer-confidence").textContent = refused
      ? percent(prediction.confidence) + " for the closest class, " + title(prediction.label, prediction.name)
      : percent(prediction.confidence);
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

  /* What one predicted image says on the page: its answer, a refusal, or a hint to read a number. */
  function predictionStatus(prediction, elapsed) {
    if (prediction.in_domain === false) return notInDomain(prediction.model);
    let text = "Prediction " + title(prediction.label, prediction.name) + " in " + Math.round(elapsed) + " ms.";
    if (prediction.several_digits) text += " This looks like several digits: choose \u201ca number\u201d to read them all.";
    return text;
  }

  async function predictCanvas(pad) {
    const status = $("status");
    if (!state.hasInk) {
      status.textContent = "Draw something first.";
      return;
    }
    if (state.mode === "number") {
      await readCanvas(pad);
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
      status.textContent = predictionStatus(prediction, body.elapsed_ms);
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

  /* ---------- a number ---------- */
  /* What a reading says in words: the text, what was left out, or why there is nothing. */
  function refusalNote(reading) {
    const refused = reading.refused.length;
    if (!refused) return "";
    if (!reading.text) return notInDomain("digits");
    return refused === 1 ? "One mark doesn't look like a digit and was left out."
      : refused + " marks don't look like digits and were left out.";
  }

  function readingStatus(reading) {
    if (!reading.text) return reading.refused.length ? notInDomain("digits") : "No digits found.";
    const note = refusalNote(reading);
    return "Read " + reading.text + " in " + Math.round(reading.elapsed_ms) + " ms." + (note ? " " + note : "");
  }

  function showReading(reading, pad) {
    state.lastId = reading.request_id;
    state.lastKey = reading.correction_key;  // lets this page correct its own reading without a token
    state.lastModel = reading.model;
    $("answer").hidden = true;
    $("reading").hidden = false;
    $("reading-refused").textContent = refusalNote(reading);
    $("reading-refused").hidden = !reading.refused.length;
    $("reading-text").textContent = reading.text || "\u2014";
    $("reading-confidence").textContent = reading.text ? percent(reading.confidence) : "none";
    const list = $("reading-digits");
    list.replaceChildren();
    for (const digit of reading.digits) {
      const item = document.createElement("li");
      const img = document.createElement("img");
      img.src = digit.preview_png;
      img.alt = "digit " + digit.name + " as the model saw it";
      img.width = 56;
      img.height = 56;
      const text = document.createElement("span");
      text.textContent = digit.name + " \u00b7 " + percent(digit.confidence);
      item.append(img, text);
      list.append(item);
    }
    $("correct-text").value = "";
    $("correct-text").placeholder = reading.text || "e.g. 2026";
    $("reading-correction-status").textContent = "";
    if (pad) drawBoxes(pad, reading);
  }

  async function readCanvas(pad) {
    const status = $("status");
    status.textContent = "Reading...";
    const blob = await new Promise((resolve) => pad.canvas.toBlob(resolve, "image/png"));
    const form = new FormData();
    form.append("file", blob, "canvas.png");
    try {
      const response = await fetch("/api/v1/read?model=digits&source=canvas", { method: "POST", body: form });
      if (!response.ok) {
        status.textContent = "Could not read: " + (await errorText(response));
        return;
      }
      const reading = await response.json();
      status.textContent = readingStatus(reading);
      showReading(reading, pad);
      bringIntoView(document.querySelector(".result"), $("reading-text"));
      refreshLatest();
    } catch (e) {
      status.textContent = "The server did not answer: " + e.message;
    }
  }

  /* A correction of a reading is the right text: the digits as written, left to right. */
  async function sendReadingCorrection(event) {
    event.preventDefault();
    const out = $("reading-correction-status");
    if (!state.lastId) return;
    const text = $("correct-text").value.replace(/\s+/g, "");
    if (!/^[0-9]+$/.test(text)) {
      out.textContent = "Type the digits it was (0-9 only).";
      $("correct-text").focus();
      return;
    }
    const response = await api("/api/v1/records/" + encodeURIComponent(state.lastId) + "/correction", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text: text, correction_key: state.lastKey }),
    });
    out.textContent = response.ok ? "Thanks, saved: it was " + text + "." : "Not saved: " + (await errorText(response));
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
    const reading = state.mode === "number";
    const url = (reading ? "/api/v1/read" : "/api/v1/predict") + "?model=" + encodeURIComponent(model) +
      "&source=upload";
    let response;
    try {
      response = await fetch(url, { method: "POST", body: form });
    } catch (e) {
      list.prepend(card(null, "Upload failed", "The server did not answer: " + e.message));
      return;
    }
    let body = null;
    try { body = await response.clone().json(); } catch (e) { body = null; }
    if (reading && body && response.ok && (Array.isArray(body.readings) || typeof body.text === "string")) {
      showUploadReadings(files, body);
      return;
    }
    if (!body || !Array.isArray(body.predictions)) {
      // the whole request was refused (one file, or a problem with the request itself)
      const name = files.length === 1 ? files[0].name + ": " : "";
      list.prepend(card(null, "Upload failed", name + await errorText(response)));
      return;
    }
    // one card per file, in the order chosen: predictions and errors carry the file's "index"
    const cards = [];
    body.predictions.forEach((p, i) => {
      const refused = p.in_domain === false;
      const item = card(p.preview_png, refused ? notInDomain(p.model) : title(p.label, p.name),
        (p.file_name || "file") + " - " + (refused ? "closest " + title(p.label, p.name) + ", " : "") +
        percent(p.confidence) + (p.several_digits ? " - several digits? choose \u201ca number\u201d" : ""));
      if (refused) item.classList.add("refused");
      cards[p.index ?? i] = item;
    });
    for (const e of body.errors || []) {
      const failed = card(null, "Not predicted", e.message);
      failed.classList.add("failed");
      cards[e.index] = failed;
    }
    for (const item of cards.filter(Boolean).reverse()) list.prepend(item);
    if (body.predictions.length) refreshLatest();
  }

  /* One card per file read as a number: the file itself as thumbnail, the text, what was refused. */
  function showUploadReadings(files, body) {
    const list = $("upload-results");
    const readings = Array.isArray(body.readings) ? body.readings : [body];
    const cards = [];
    readings.forEach((r, i) => {
      const index = r.index ?? i;
      const file = files[index];
      const left = r.refused.length ? ", " + r.refused.length + " mark(s) not a digit" : "";
      const item = card(file ? URL.createObjectURL(file) : null, r.text || notInDomain("digits"),
        (r.file_name || "file") + " - " + (r.text ? percent(r.confidence) : "no digits") + left);
      item.classList.add("photo");
      if (!r.text) item.classList.add("refused");
      item.dataset.recordId = r.request_id;
      cards[index] = item;
    });
    for (const e of body.errors || []) {
      const failed = card(null, "Not read", e.message);
      failed.classList.add("failed");
      cards[e.index] = failed;
    }
    for (const item of cards.filter(Boolean).reverse()) list.prepend(item);
    if (readings.length) refreshLatest();
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
      const reading = r.kind === "reading";
      const correction = reading ? r.corrected_text : r.corrected_label;
      const fixed = correction === null || correction === undefined ? "" : " (corrected: " + correction + ")";
      const answer = reading ? (r.text || "no digits") : title(r.label, r.class_name);
      const item = card(await thumbnail(r), answer + fixed,
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

  /* The model and "one digit / a number" switches: heading, canvas size and the button follow them.
     Reading a number is for the digits model only. */
  function setupSwitches(pad) {
    const heading = document.querySelector(".intro h1");
    const number = document.querySelector('input[name="mode"][value="number"]');
    const apply = () => {
      const digits = selectedModel() === "digits";
      if (!digits && number.checked) document.querySelector('input[name="mode"][value="digit"]').checked = true;
      number.disabled = !digits;
      const checked = document.querySelector('input[name="mode"]:checked');
      const mode = checked ? checked.value : "digit";
      if (mode !== state.mode) {
        state.mode = mode;
        pad.resize(...PAD_SIZES[mode]);
        $("answer").hidden = true;
        $("reading").hidden = true;
        $("status").textContent = mode === "number"
          ? "Write a number, digits side by side, and press read it." : "Draw something and press predict it.";
      }
      document.querySelector(".workbench").classList.toggle("number", mode === "number");
      $("predict").textContent = mode === "number" ? "read it" : "predict it";
      heading.textContent = mode === "number" ? "Write a number" : digits ? "Draw a digit" : "Draw a piece of clothing";
      pad.canvas.setAttribute("aria-label", mode === "number" ? "Drawing area: write a number here, digits side by side"
        : digits ? "Drawing area: draw one digit here" : "Drawing area: draw one piece of clothing here");
    };
    document.querySelectorAll('input[name="model"], input[name="mode"]').forEach((radio) => {
      radio.addEventListener("change", apply);
    });
    apply();
  }

  function start() {
    if (document.body.dataset.page === "records") startRecords();
    if (document.body.dataset.page !== "draw") return;
    const pad = setupCanvas();
    $("predict").addEventListener("click", () => predictCanvas(pad));
    $("clear").addEventListener("click", () => {
      pad.clear();
      $("answer").hidden = true;
      $("reading").hidden = true;
      $("status").textContent = "Cleared. Draw again and press " + $("predict").textContent + ".";
    });
    $("correction").addEventListener("submit", sendCorrection);
    $("reading-correction").addEventListener("submit", sendReadingCorrection);
    setupUploads();
    setupToken(refreshLatest);
    setupSwitches(pad);
    loadModels();
    refreshLatest();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
