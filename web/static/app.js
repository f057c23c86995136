// album-enhance web app: a small single page over the JSON API. The API key lives in sessionStorage (this tab
// only) and goes in the Authorization header of every request, the event stream included (read with fetch(),
// since EventSource cannot send headers), so it never appears in a URL.
"use strict";

const LIMITS = JSON.parse(document.querySelector('meta[name="limits"]').content);
const KEY_STORE = "album-enhance.api-key";
const FINAL = new Set(["COMPLETED", "CANCELLED", "FAILED"]);
const IN_FLIGHT = new Set(["PENDING", "PROCESSING"]);
const $ = (id) => document.getElementById(id);

const state = { me: null, album: null, selected: new Set(), batch: null, stream: null, blobs: [], quote: null };

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function apiKey() { return sessionStorage.getItem(KEY_STORE); }

async function api(path, { method = "GET", json, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { ...authHeaders(), ...headers } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/api/me") signOut("Your session ended: sign in again.");
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return response;
}

const getJson = async (path) => (await api(path)).json();

async function blobUrl(path) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  state.blobs.push(url);
  return url;
}

function releaseBlobs() {
  state.blobs.forEach((url) => URL.revokeObjectURL(url));
  state.blobs = [];
}

// A result's extension follows the format it was written in (its media type).
const EXTENSIONS = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/avif": "avif" };

async function download(path, filename) {
  const blob = await (await api(path)).blob();
  if (filename.endsWith(".*")) filename = filename.slice(0, -1) + (EXTENSIONS[blob.type] || "jpg");
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

let toastTimer;
function say(message, kind = "info") {
  const status = $("status");
  status.textContent = message;
  status.dataset.kind = kind;
  status.classList.add("shown");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => status.classList.remove("shown"), 5000);
}

function failed(error) { say(error.message || String(error), "error"); }

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const tierLabel = (tier) => tier.replace("TIER_", "");

// --- session ---------------------------------------------------------------------------------------------------

async function refreshMe() {
  state.me = await getJson("/api/me");
  $("balance-value").textContent = state.me.tokenBalance;
  $("account").hidden = false;
  renderQuote();
}

function signOut(message) {
  endSession();
  sessionStorage.removeItem(KEY_STORE);
  stopStream();
  state.me = null;
  $("account").hidden = true;
  if (message) say(message);
  location.hash = "#/";
  route();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
  try {
    await refreshMe();
    $("api-key").value = "";
    $("signin-error").textContent = "";
    route();
  } catch (error) {
    sessionStorage.removeItem(KEY_STORE);
    $("signin-error").textContent = error.status === 401 ? "That key is not valid." : error.message;
  }
});
$("sign-out").addEventListener("click", () => signOut("Signed out."));

// --- views -----------------------------------------------------------------------------------------------------

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
}

async function route() {
  if (!apiKey() && !hasSession()) {
    // People sign in with email and password on the account page; #/key is the API-key sign-in.
    if (location.hash !== "#/key") return location.replace("/account#/signin");
    show("signin");
    $("api-key").focus();
    return;
  }
  try {
    if (!state.me) await refreshMe();
    const [, page, id] = location.hash.split("/");
    if (page !== "albums" || id !== state.album?.id) leaveAlbum();
    if (page === "albums" && id) await openAlbum(decodeURIComponent(id));
    else if (page === "ledger") await openLedger();
    else if (page === "webhooks") await openWebhooks(); // webhooks.js
    else await openAlbums();
  } catch (error) {
    if (error.status === 401) return signOut("Your session ended: sign in again.");
    failed(error);
  }
}
window.addEventListener("hashchange", route);

async function openAlbums() {
  const { albums } = await getJson("/api/albums");
  const list = $("album-list");
  list.replaceChildren(
    ...albums.map((album) => {
      const item = $("album-card").content.cloneNode(true);
      const link = item.querySelector("a");
      link.href = `#/albums/${encodeURIComponent(album.id)}`;
      item.querySelector(".name").textContent = album.name;
      item.querySelector(".count").textContent = plural(album.imageCount, "photo");
      return item;
    }),
  );
  $("albums-empty").hidden = albums.length > 0;
  show("albums");
}

$("album-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const album = await (await api("/api/albums", { method: "POST", json: { name: $("album-name").value.trim() } })).json();
    $("album-name").value = "";
    location.hash = `#/albums/${encodeURIComponent(album.id)}`;
  } catch (error) {
    failed(error);
  }
});

async function openLedger() {
  await refreshMe();
  const { transactions } = await getJson("/api/tokens/transactions?limit=200");
  $("ledger-balance").textContent = state.me.tokenBalance;
  const what = { GRANT: "Tokens granted", CONSUME: "Enhancement charged", REFUND: "Refund" };
  $("ledger-rows").replaceChildren(
    ...transactions.map((row) => {
      const tr = document.createElement("tr");
      const when = new Date(row.createdAt).toLocaleString();
      const cells = [when, what[row.type] || row.type, (row.amount > 0 ? "+" : "") + row.amount, row.balanceAfter];
      cells.forEach((text, index) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (index === 0) td.className = "when";
        if (index === 1) {
          td.className = "what";
          td.append(ledgerContext(row), Object.assign(document.createElement("span"), { className: "when-inline muted", textContent: when }));
        }
        if (index >= 2) td.className = "num";
        if (index === 2) td.classList.add(row.amount < 0 ? "minus" : "plus");
        tr.append(td);
      });
      tr.dataset.type = row.type;
      return tr;
    }),
  );
  show("ledger");
}

// Which album, batch and photo a charge or refund was for (an empty line for grants), the album a link to it.
function ledgerContext(row) {
  const line = Object.assign(document.createElement("span"), { className: "context muted" });
  const c = row.context;
  if (!c) return line;
  line.title = `Batch ${c.batchId}`;
  line.dataset.batchId = c.batchId;
  const album = c.albumId
    ? Object.assign(document.createElement("a"), { href: `#/albums/${encodeURIComponent(c.albumId)}`, textContent: c.albumName })
    : "a deleted album";
  if (row.type === "REFUND") line.append(`${c.imageFilename || "a deleted photo"} at ${tierLabel(c.tier)} · `, album);
  else line.append(`${plural(c.images, "photo")} at ${tierLabel(c.tier)} · `, album);
  return line;
}

// --- album -----------------------------------------------------------------------------------------------------

function leaveAlbum() {
  stopStream();
  releaseBlobs();
  state.album = null;
  state.batch = null;
  state.quote = null;
  state.selected.clear();
  $("progress-panel").hidden = true;
  $("uploads").replaceChildren();
}

async function loadAlbum(id) {
  state.album = await getJson(`/api/albums/${encodeURIComponent(id)}`);
  const ids = new Set(state.album.images.map((image) => image.id));
  for (const selected of [...state.selected]) if (!ids.has(selected)) state.selected.delete(selected);
}

async function openAlbum(id) {
  const first = state.album?.id !== id;
  await loadAlbum(id);
  renderAlbum();
  show("album");
  if (first) {
    const running = state.album.images.flatMap((image) => image.enhancementJobs).find((job) => IN_FLIGHT.has(job.status));
    if (running) watchBatch(running.batchId, running.tier);
  }
}

function latestJob(image, predicate) {
  const jobs = image.enhancementJobs.filter(predicate);
  return jobs[jobs.length - 1];
}

function renderAlbum() {
  const album = state.album;
  $("album-title").textContent = album.name;
  renderAlbumSummary();
  $("images-empty").hidden = album.images.length > 0;
  const grid = $("image-grid");
  const tiles = new Map([...grid.children].map((tile) => [tile.dataset.imageId, tile]));
  grid.replaceChildren(...album.images.map((image) => renderTile(tiles.get(image.id), image)));
  renderQuote();
}

// The counts under the title and the zip button: redrawn as each photo of a batch completes, not at its end.
function renderAlbumSummary() {
  const album = state.album;
  const enhanced = album.images.filter((image) => latestJob(image, (job) => job.status === "COMPLETED")).length;
  $("album-meta").textContent = `${plural(album.images.length, "photo")} · ${enhanced} enhanced`;
  $("download-zip").disabled = enhanced === 0;
}

function badgeOf(image) {
  const job = image.enhancementJobs[image.enhancementJobs.length - 1];
  if (!job) return { text: "Original", status: "NONE" };
  const done = latestJob(image, (j) => j.status === "COMPLETED");
  const text = {
    PENDING: `Queued · ${tierLabel(job.tier)}`,
    PROCESSING: `Enhancing · ${tierLabel(job.tier)}`,
    COMPLETED: `Enhanced · ${tierLabel(job.tier)}`,
    FAILED: "Failed · refunded",
    CANCELLED: "Cancelled · refunded",
  }[job.status];
  if ((job.status === "FAILED" || job.status === "CANCELLED") && done) return { text: `Enhanced · ${tierLabel(done.tier)}`, status: "COMPLETED" };
  return { text, status: job.status };
}

function renderTile(existing, image) {
  const tile = existing || $("image-tile").content.firstElementChild.cloneNode(true);
  const name = image.filename || image.id.slice(0, 8);
  if (!existing) {
    tile.dataset.imageId = image.id;
    const img = tile.querySelector("img");
    img.alt = name;
    blobUrl(`/api/images/${image.id}/thumbnail`).then((url) => { img.src = url; }).catch(() => tile.classList.add("broken"));
    const box = tile.querySelector(".select");
    box.setAttribute("aria-label", `Select ${name}`);
    box.addEventListener("change", () => {
      if (box.checked) state.selected.add(image.id);
      else state.selected.delete(image.id);
      renderQuote();
    });
    tile.querySelector(".delete").addEventListener("click", () => deleteImage(image.id, name));
  }
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".select").checked = state.selected.has(image.id);
  const badge = badgeOf(image);
  const label = tile.querySelector(".badge");
  label.textContent = badge.text;
  tile.dataset.status = badge.status;
  const done = latestJob(image, (job) => job.status === "COMPLETED");
  for (const [selector, handler] of [[".compare-open", () => openCompare(image, done)], [".download", () => downloadResult(image, done)]]) {
    const button = tile.querySelector(selector);
    button.hidden = !done;
    button.onclick = handler;
    button.setAttribute("aria-label", `${button.textContent} ${name}`);
  }
  tile.querySelector(".delete").setAttribute("aria-label", `Delete ${name}`);
  return tile;
}

async function deleteImage(id, name) {
  if (!confirm(`Delete ${name} and its enhanced versions? This cannot be undone.`)) return;
  try {
    await api(`/api/images/${id}`, { method: "DELETE" });
    say(`Deleted ${name}.`);
    await loadAlbum(state.album.id);
    renderAlbum();
  } catch (error) {
    failed(error);
  }
}

$("delete-album").addEventListener("click", async () => {
  const album = state.album;
  if (!album || !confirm(`Delete the album “${album.name}” with all its photos? This cannot be undone.`)) return;
  try {
    await api(`/api/albums/${album.id}`, { method: "DELETE" });
    say(`Deleted ${album.name}.`);
    location.hash = "#/";
  } catch (error) {
    failed(error);
  }
});

$("download-zip").addEventListener("click", () => {
  const album = state.album;
  download(`/api/albums/${album.id}/results.zip`, `${album.name.replace(/[^\w-]+/g, "-") || "album"}-enhanced.zip`).catch(failed);
});

function downloadResult(image, job) {
  const stem = (image.filename || image.id).replace(/\.[^.]*$/, "");
  download(`/api/jobs/${job.jobId}/result`, `${stem}-${tierLabel(job.tier)}.*`).catch(failed);
}

// --- upload ----------------------------------------------------------------------------------------------------

const dropzone = $("dropzone");
$("file-input").addEventListener("change", (event) => {
  uploadAll([...event.target.files]);
  event.target.value = "";
});
dropzone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropzone.classList.add("over");
});
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("over");
  uploadAll([...event.dataTransfer.files]);
});

async function uploadAll(files) {
  const albumId = state.album.id;
  // One request per file, in the order chosen (which is the album's order): each file gets its own progress
  // bar, and one bad file fails alone. The bandwidth is shared anyway, so parallel requests would not be faster.
  const rows = files.map((file) => [file, uploadRow(file)]);
  for (const [file, row] of rows) await uploadOne(albumId, file, row);
  if (state.album?.id === albumId) {
    await loadAlbum(albumId);
    renderAlbum();
  }
}

function uploadRow(file) {
  const row = document.createElement("li");
  const label = Object.assign(document.createElement("span"), { textContent: file.name });
  const bar = Object.assign(document.createElement("progress"), { max: 1, value: 0 });
  bar.setAttribute("aria-label", `Upload of ${file.name}`);
  const note = Object.assign(document.createElement("span"), { className: "muted note", textContent: "waiting" });
  row.append(label, bar, note);
  $("uploads").append(row);
  return row;
}

function uploadOne(albumId, file, row) {
  const [bar, note] = [row.querySelector("progress"), row.querySelector(".note")];
  if (file.size > LIMITS.maxUploadBytes) {
    row.dataset.state = "failed";
    note.textContent = "too large";
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const body = new FormData();
    body.append("files", file, file.name);
    xhr.open("POST", `/api/albums/${encodeURIComponent(albumId)}/images`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = event.loaded / event.total;
      note.textContent = `${Math.round(bar.value * 100)} %`;
    });
    xhr.addEventListener("load", () => {
      const ok = xhr.status === 201;
      bar.value = ok ? 1 : bar.value;
      row.dataset.state = ok ? "done" : "failed";
      let message = "uploaded";
      if (!ok) {
        try { message = JSON.parse(xhr.responseText).error; } catch { message = `failed (HTTP ${xhr.status})`; }
      }
      note.textContent = message;
      if (ok) setTimeout(() => row.remove(), 4000);
      resolve();
    });
    xhr.addEventListener("error", () => {
      row.dataset.state = "failed";
      note.textContent = "network error";
      resolve();
    });
    xhr.send(body);
  });
}

// --- enhance: quote and confirm ----------------------------------------------------------------------------------
// The server quotes: it applies the very rules of the enhance (skip filter, batch size, cost, balance) to the body
// the button would send, so the page never re-implements them. Any change of what the quote depends on asks again.

function selectedTier() { return document.querySelector('input[name="tier"]:checked').value; }

function enhanceBody() {
  const body = { tier: selectedTier(), skipAlreadyEnhanced: $("skip-enhanced").checked };
  if ($("only-selected").checked && state.selected.size > 0) body.imageIds = [...state.selected];
  body.outputFormat = $("output-format").value;
  body.keepLocation = $("keep-location").checked;
  return body;
}

let quoteTimer;
let quoteAsked = 0;
function renderQuote() {
  if (!state.album) return;
  $("selected-count").textContent = state.selected.size;
  $("only-selected").disabled = state.selected.size === 0;
  $("enhance-panel").dataset.quote = "pending";
  $("quote").setAttribute("aria-busy", "true");
  renderEnhanceButton();
  clearTimeout(quoteTimer);
  quoteTimer = setTimeout(askQuote, 50); // several changes at once (a batch's events) ask once
}

async function askQuote() {
  const album = state.album;
  if (!album) return;
  const asked = ++quoteAsked;
  const body = enhanceBody();
  try {
    const quote = await (await api(`/api/albums/${encodeURIComponent(album.id)}/enhance/quote`, { method: "POST", json: body })).json();
    if (asked !== quoteAsked || state.album !== album) return; // a newer question is under way
    state.quote = { ...quote, body };
    $("enhance-panel").dataset.quote = "ready";
  } catch (error) {
    if (asked !== quoteAsked) return;
    state.quote = null;
    $("enhance-panel").dataset.quote = "failed";
    failed(error);
  }
  $("quote").removeAttribute("aria-busy");
  showQuote();
}

// What the server's refusal means to the person choosing (the facts come from the refusal itself).
function problemOf(quote) {
  const refusal = quote.refusal;
  if (!refusal) return quote.queued === 0 ? "Nothing to enhance: every photo is already enhanced (or in progress) at this tier." : "";
  if (refusal.status === 402) return `Not enough tokens: this needs ${refusal.required}, you have ${refusal.balance}.`;
  if (refusal.maxBatchSize !== undefined) return `Too many photos for one batch: ${refusal.toEnhance}, at most ${refusal.maxBatchSize}. Select some and tick “Only the selected images”.`;
  if (refusal.status === 404) return "Upload photos first.";
  return refusal.error;
}

// Nothing to do yet (no photos, all enhanced) is an ordinary state: a notice. A refusal the person can act on is a
// warning, and a shortage of tokens says how to get more. Red is for what went wrong.
function problemKind(quote) {
  const refusal = quote && quote.refusal;
  return !refusal || refusal.status === 404 ? "notice" : "warning";
}

function tokensHelp() {
  const help = Object.assign(document.createElement("span"), { className: "help" });
  if (LIMITS.tokensHelpUrl) {
    const link = Object.assign(document.createElement("a"), { href: LIMITS.tokensHelpUrl, textContent: "Get more tokens", target: "_blank", rel: "noopener" });
    help.append(link, ", or choose fewer photos or a lower tier.");
  } else {
    help.append("Choose fewer photos or a lower tier, or ask the people who run this service for more tokens.");
  }
  return help;
}

function showQuote() {
  const quote = state.quote;
  const problem = quote ? problemOf(quote) : "";
  $("quote-count").textContent = quote ? quote.queued : "—";
  $("quote-cost").textContent = quote ? plural(quote.totalCost, "token") : "—";
  $("quote-balance").textContent = quote ? plural(quote.balance, "token") : "—";
  $("quote-after").textContent = quote && !problem ? plural(quote.newBalance, "token") : "—";
  const box = $("quote-problem");
  box.replaceChildren(problem);
  if (problem && quote.refusal && quote.refusal.status === 402) box.append(" ", tokensHelp());
  box.className = problemKind(quote);
  box.dataset.status = quote && quote.refusal ? quote.refusal.status : "";
  renderEnhanceButton();
}

function renderEnhanceButton() {
  const quote = $("enhance-panel").dataset.quote === "ready" ? state.quote : null;
  const problem = quote ? problemOf(quote) : "";
  const busy = Boolean(state.batch && !FINAL.has(state.batch.status));
  $("enhance-button").disabled = !quote || Boolean(problem) || busy;
  $("enhance-button").textContent = quote && !problem ? `Enhance ${plural(quote.queued, "photo")} · ${plural(quote.totalCost, "token")}` : "Enhance";
}

for (const input of document.querySelectorAll('input[name="tier"], #skip-enhanced, #only-selected, #output-format, #keep-location')) input.addEventListener("change", renderQuote);
for (const small of document.querySelectorAll("small[data-cost]")) small.textContent = `${LIMITS.tierCosts[small.dataset.cost]} / photo`;
$("batch-limit").textContent = LIMITS.maxBatchSize;

$("enhance-button").addEventListener("click", async () => {
  const quote = $("enhance-panel").dataset.quote === "ready" ? state.quote : null;
  if (!quote || problemOf(quote)) return;
  $("enhance-button").disabled = true;
  try {
    const result = await (await api(`/api/albums/${state.album.id}/enhance`, { method: "POST", json: quote.body })).json();
    state.me.tokenBalance = result.newBalance;
    $("balance-value").textContent = result.newBalance;
    if (result.batchId) {
      say(`Enhancing ${plural(result.queued, "photo")} at ${tierLabel(quote.body.tier)} for ${plural(result.totalCost, "token")}.`);
      watchBatch(result.batchId, quote.body.tier);
    } else {
      say("Nothing to enhance.");
    }
    await loadAlbum(state.album.id);
    renderAlbum();
  } catch (error) {
    failed(error);
    await refreshMe().catch(() => {});
  }
});

// --- live progress -----------------------------------------------------------------------------------------------

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function watchBatch(batchId, tier) {
  stopStream();
  state.batch = { batchId, tier, status: "RUNNING", totalImages: 0, completed: 0, failed: 0, cancelled: 0, tokensRefunded: 0, current: null };
  $("progress-tier").textContent = `at ${tierLabel(tier)}`;
  $("progress-panel").hidden = false;
  renderProgress();
  const controller = new AbortController();
  state.stream = controller;
  readEvents(batchId, controller.signal).catch((error) => {
    if (error.name !== "AbortError") failed(error);
  });
}

// Reads `text/event-stream` with fetch (so the API key goes in a header) and reconnects with Last-Event-ID.
async function readEvents(batchId, signal) {
  let lastId = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers = lastId ? { "Last-Event-ID": lastId } : {};
      const response = await api(`/api/batches/${encodeURIComponent(batchId)}/events`, { signal, headers });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.id) lastId = event.id;
          if (event.name === "end") return onEnd(event.data);
          if (event.name === "job") onJob(event.data);
          if (event.name === "batch") onBatch(event.data);
          if (event.name === "step") onStep(event.data);
          attempt = 0;
        }
      }
    } catch (error) {
      // 429: too many open streams of this user (other tabs); one will close, so try again later.
      if (signal.aborted || (error instanceof ApiError && error.status < 500 && error.status !== 429)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 10000)));
  }
}

function parseEvent(block) {
  const event = { name: "message", data: null, id: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const [field, ...rest] = line.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "data") data.push(value);
    else if (field === "id") event.id = value;
  }
  if (data.length) event.data = JSON.parse(data.join("\n"));
  return event;
}

function onJob(job) {
  const image = state.album?.images.find((candidate) => candidate.id === job.imageId);
  if (!image) return;
  const known = image.enhancementJobs.find((candidate) => candidate.jobId === job.jobId);
  if (known) known.status = job.status;
  else image.enhancementJobs.push({ jobId: job.jobId, batchId: state.batch.batchId, tier: state.batch.tier, status: job.status });
  const tile = $("image-grid").querySelector(`[data-image-id="${CSS.escape(image.id)}"]`);
  if (tile) renderTile(tile, image);
  const b = state.batch;
  if (job.status === "PROCESSING" && b.current?.jobId !== job.jobId) {
    b.current = { jobId: job.jobId, imageId: job.imageId, step: null, elapsed: null, at: null, done: null, total: null, first: null };
  }
  if (job.status !== "PROCESSING" && b.current?.jobId === job.jobId) b.current = null;
  renderAlbumSummary();
  renderImageProgress();
}

function onBatch(batch) {
  const refunded = state.batch.tokensRefunded;
  state.batch = { ...state.batch, ...batch };
  // A refund during the batch changes the balance now: the header shows it now.
  if (batch.tokensRefunded !== refunded) refreshMe().catch(() => {});
  renderProgress();
}

// The step of the image in progress ("tile 7 of 48") with the seconds it has run on the server's clock.
function onStep(step) {
  const b = state.batch;
  const tile = /^tile (\d+) of (\d+)$/.exec(step.step || "");
  const previous = b.current?.jobId === step.jobId ? b.current : null;
  const current = {
    jobId: step.jobId,
    imageId: step.imageId,
    step: step.step,
    elapsed: step.elapsedSeconds,
    at: performance.now() / 1000,
    done: tile ? Number(tile[1]) - 1 : null,
    total: tile ? Number(tile[2]) : null,
    first: previous?.first || null,
  };
  if (tile && !current.first && current.elapsed !== null) current.first = { done: current.done, elapsed: current.elapsed };
  b.current = current;
  renderImageProgress();
}

// Seconds per tile of the image in progress: measured over the tiles this page saw done when there are a few
// (an image's start also reads it and starts the network), else over all its tiles since it started.
function secondsPerTile(c) {
  if (c.total === null || c.elapsed === null) return null;
  if (c.first && c.done - c.first.done >= 2) return (c.elapsed - c.first.elapsed) / (c.done - c.first.done);
  return c.done > 0 ? c.elapsed / c.done : null;
}

function aboutLeft(seconds) {
  if (seconds < 10) return "a few seconds left";
  if (seconds < 60) return `about ${Math.ceil(seconds / 5) * 5} s left`;
  const minutes = Math.ceil(seconds / 60);
  return minutes < 60 ? `about ${minutes} min left` : `about ${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

// Between two steps the bar moves on at the measured pace (never past the next tile) and the estimate counts down.
let imageProgressTimer = null;
function renderImageProgress() {
  const b = state.batch;
  const c = b && !FINAL.has(b.status) ? b.current : null;
  clearTimeout(imageProgressTimer);
  for (const tile of $("image-grid").querySelectorAll(".tile-progress")) {
    if (!c || tile.closest(".tile").dataset.imageId !== c.imageId) tile.hidden = true;
  }
  $("image-progress").hidden = !c;
  if (!c) return;
  const image = state.album?.images.find((candidate) => candidate.id === c.imageId);
  const name = image ? image.filename || image.id.slice(0, 8) : "A photo";
  const perTile = secondsPerTile(c);
  const since = performance.now() / 1000 - (c.at || 0);
  let fraction = null;
  let text = c.step || "enhancing";
  let eta = "";
  if (c.total !== null) {
    const within = perTile ? Math.min(since / perTile, 0.95) : 0;
    fraction = (c.done + within) / (c.total + 1); // the tiles, then the encoding
    text = `tile ${c.done + 1} of ${c.total}`;
    eta = perTile ? aboutLeft(Math.max(perTile * (c.total - c.done) - since, 0)) : "estimating the time left…";
  } else if (c.step === "encoding") {
    fraction = 1;
    eta = "a few seconds left";
  }
  const bars = [$("image-progress-bar")];
  const tile = $("image-grid").querySelector(`[data-image-id="${CSS.escape(c.imageId)}"] .tile-progress`);
  if (tile) {
    tile.hidden = false;
    tile.querySelector(".tile-step").textContent = c.total !== null ? `${c.done + 1}/${c.total}${perTile ? ` · ${eta.replace(/ left$/, "").replace(/^about /, "")}` : ""}` : text;
    bars.push(tile.querySelector("progress"));
  }
  for (const bar of bars) {
    if (fraction === null) bar.removeAttribute("value"); // indeterminate: working, no measure yet
    else bar.value = fraction;
  }
  $("image-progress-name").textContent = name;
  $("image-progress-step").textContent = text;
  $("image-progress-eta").textContent = eta;
  $("image-progress").dataset.imageId = c.imageId;
  if (c.total !== null && perTile) imageProgressTimer = setTimeout(renderImageProgress, 1000);
}

async function onEnd() {
  state.stream = null;
  state.batch.current = null;
  renderProgress();
  const b = state.batch;
  const refunded = b.tokensRefunded ? `, ${plural(b.tokensRefunded, "token")} refunded` : "";
  say(`Batch ${b.status.toLowerCase()}: ${b.completed} enhanced${refunded}.`);
  await Promise.all([refreshMe(), loadAlbum(state.album.id)]).catch(failed);
  if (state.album) renderAlbum();
}

function renderProgress() {
  const b = state.batch;
  const done = b.completed + b.failed + b.cancelled;
  const bar = $("progress-bar");
  bar.max = Math.max(b.totalImages, 1);
  bar.value = done;
  const parts = [`${done} of ${b.totalImages} done`, `${b.completed} enhanced`];
  if (b.failed) parts.push(`${b.failed} failed`);
  if (b.cancelled) parts.push(`${b.cancelled} cancelled`);
  if (b.tokensRefunded) parts.push(`${plural(b.tokensRefunded, "token")} refunded`);
  const finished = FINAL.has(b.status);
  const cancelling = Boolean(b.cancelling || b.cancelRequested) && !finished;
  const title = { COMPLETED: b.failed ? "Finished" : "Enhanced", CANCELLED: "Cancelled", FAILED: "Failed", PAUSED: "Paused" }[b.status];
  $("progress-state").textContent = cancelling ? "Cancelling" : title || "Enhancing";
  $("progress-text").textContent = `${b.status === "PAUSED" ? "Paused · " : ""}${finished ? `${b.status[0]}${b.status.slice(1).toLowerCase()} · ` : ""}${parts.join(" · ")}`;
  $("progress-panel").dataset.status = b.status;
  $("progress-panel").dataset.cancelling = cancelling;
  $("pause-batch").hidden = finished || cancelling || b.status === "PAUSED";
  $("resume-batch").hidden = finished || cancelling || b.status !== "PAUSED";
  $("cancel-batch").hidden = finished || cancelling;
  $("dismiss-batch").hidden = !finished;
  renderImageProgress();
  renderQuote();
}

for (const [id, action] of [["pause-batch", "pause"], ["resume-batch", "resume"], ["cancel-batch", "cancel"]]) {
  $(id).addEventListener("click", async () => {
    if (action === "cancel" && !confirm("Cancel this batch? Photos not enhanced yet are refunded.")) return;
    try {
      const result = await (await api(`/api/batches/${encodeURIComponent(state.batch.batchId)}/${action}`, { method: "POST" })).json();
      state.batch.status = result.status;
      if (action === "cancel") state.batch.cancelling = true; // until the stream says the batch ended
      renderProgress();
      say(action === "cancel" ? "Cancelling: photos not enhanced yet are refunded." : `Batch ${result.status.toLowerCase()}.`);
    } catch (error) {
      failed(error);
    }
  });
}

$("dismiss-batch").addEventListener("click", () => { $("progress-panel").hidden = true; });

// --- before / after ----------------------------------------------------------------------------------------------

const dialog = $("compare");
let compareTarget = null;

async function openCompare(image, job) {
  compareTarget = { image, job };
  $("compare-info").textContent = `${image.filename || ""} · ${tierLabel(job.tier)}`;
  $("compare-slider").value = 50;
  setSplit(50);
  const stage = $("compare-stage");
  stage.style.aspectRatio = `${image.width} / ${image.height}`;
  stage.style.maxWidth = `calc(70vh * ${image.width / image.height})`; // no letterbox when height is the limit
  dialog.showModal();
  setView(1, 0, 0);
  try {
    const [before, after] = await Promise.all([blobUrl(`/api/images/${image.id}/original`), blobUrl(`/api/jobs/${job.jobId}/result`)]);
    $("compare-before").src = before;
    $("compare-after").src = after;
  } catch (error) {
    failed(error);
  }
}

function setSplit(percent) {
  $("compare-after-clip").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("compare-stage").style.setProperty("--split", `${percent}%`);
}

$("compare-slider").addEventListener("input", (event) => setSplit(event.target.value));

function splitTo(clientX) {
  const box = $("compare-stage").getBoundingClientRect();
  const percent = Math.round(Math.min(Math.max((clientX - box.left) / box.width, 0), 1) * 100);
  $("compare-slider").value = percent;
  setSplit(percent);
}

// Zoom and pan: both photos move together under the split line, which stays where it is on screen, so the same
// spot is compared at any zoom. Zoom 1 fits the whole photo; "100 %" shows one pixel of the enhanced photo per
// screen pixel. Dragging pans once zoomed (near the line, or at fit, it moves the line); two fingers pinch.
const view = { zoom: 1, x: 0, y: 0 };

function zoomOf100() {
  const after = $("compare-after");
  const width = $("compare-stage").clientWidth * (window.devicePixelRatio || 1);
  return after.naturalWidth && width ? after.naturalWidth / width : 1;
}

function setView(zoom, x, y) {
  const stage = $("compare-stage");
  const [w, h] = [stage.clientWidth, stage.clientHeight];
  view.zoom = Math.min(Math.max(zoom, 1), Math.max(4, zoomOf100() * 4));
  view.x = Math.min(0, Math.max(w - w * view.zoom, x)); // never past the photo's edges
  view.y = Math.min(0, Math.max(h - h * view.zoom, y));
  const transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  $("compare-before").style.transform = transform;
  $("compare-after").style.transform = transform;
  const percent = Math.round((view.zoom / zoomOf100()) * 100);
  stage.dataset.zoomed = view.zoom > 1.001;
  stage.dataset.pixels = view.zoom > zoomOf100() * 1.01; // past 100 %: show the pixels as they are
  $("zoom-level").textContent = view.zoom > 1.001 ? `${percent} %` : `Fit · ${percent} %`;
  $("zoom-out").disabled = view.zoom <= 1.001;
}

// Zoom to `zoom` keeping the point (x, y) of the stage where it is.
function zoomAt(zoom, x, y) {
  const stage = $("compare-stage");
  x ??= stage.clientWidth / 2;
  y ??= stage.clientHeight / 2;
  const target = Math.min(Math.max(zoom, 1), Math.max(4, zoomOf100() * 4));
  const k = target / view.zoom;
  setView(target, x - (x - view.x) * k, y - (y - view.y) * k);
}

const stage = $("compare-stage");
const pointers = new Map();
let gesture = null;

function stagePoint(event) {
  const box = stage.getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
}

function startGesture(event) {
  const points = [...pointers.values()];
  if (points.length >= 2) {
    const [a, b] = points;
    gesture = { kind: "pinch", distance: Math.hypot(a.x - b.x, a.y - b.y), zoom: view.zoom };
    return;
  }
  const box = stage.getBoundingClientRect();
  const nearLine = Math.abs(event.clientX - box.left - (box.width * $("compare-slider").value) / 100) < 24;
  if (view.zoom <= 1.001 || nearLine) gesture = { kind: "split" };
  else gesture = { kind: "pan", x: event.clientX, y: event.clientY, viewX: view.x, viewY: view.y };
}

stage.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  stage.setPointerCapture(event.pointerId);
  pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
  startGesture(event);
  if (gesture.kind === "split") splitTo(event.clientX);
  stage.classList.toggle("panning", gesture.kind === "pan");
});
stage.addEventListener("pointermove", (event) => {
  if (!pointers.has(event.pointerId) || !gesture) return;
  pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
  if (gesture.kind === "split") splitTo(event.clientX);
  else if (gesture.kind === "pan") setView(view.zoom, gesture.viewX + event.clientX - gesture.x, gesture.viewY + event.clientY - gesture.y);
  else {
    const [a, b] = [...pointers.values()];
    const box = stage.getBoundingClientRect();
    zoomAt((gesture.zoom * Math.hypot(a.x - b.x, a.y - b.y)) / gesture.distance, (a.x + b.x) / 2 - box.left, (a.y + b.y) / 2 - box.top);
  }
});
for (const name of ["pointerup", "pointercancel"]) {
  stage.addEventListener(name, (event) => {
    pointers.delete(event.pointerId);
    gesture = null;
    stage.classList.remove("panning");
    const [left] = pointers.entries();
    if (left) gesture = { kind: "pan", x: left[1].x, y: left[1].y, viewX: view.x, viewY: view.y };
  });
}
stage.addEventListener("wheel", (event) => {
  event.preventDefault();
  zoomAt(view.zoom * Math.exp(-event.deltaY * 0.002), ...stagePoint(event));
}, { passive: false });
stage.addEventListener("dblclick", (event) => {
  if (view.zoom > 1.001) setView(1, 0, 0);
  else zoomAt(zoomOf100(), ...stagePoint(event));
});
stage.addEventListener("keydown", (event) => {
  const step = 0.1 * stage.clientWidth;
  const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
  if (event.key === "+" || event.key === "=") zoomAt(view.zoom * 1.5);
  else if (event.key === "-") zoomAt(view.zoom / 1.5);
  else if (event.key === "0") setView(1, 0, 0);
  else if (event.key === "1") zoomAt(zoomOf100());
  else if (moves[event.key] && view.zoom > 1.001) setView(view.zoom, view.x + moves[event.key][0], view.y + moves[event.key][1]);
  else return;
  event.preventDefault();
});
$("zoom-in").addEventListener("click", () => zoomAt(view.zoom * 1.5));
$("zoom-out").addEventListener("click", () => zoomAt(view.zoom / 1.5));
$("zoom-fit").addEventListener("click", () => setView(1, 0, 0));
$("zoom-100").addEventListener("click", () => zoomAt(zoomOf100()));
$("compare-after").addEventListener("load", () => setView(view.zoom, view.x, view.y)); // its size sets "100 %"
window.addEventListener("resize", () => dialog.open && setView(1, 0, 0));
$("compare-download").addEventListener("click", () => compareTarget && downloadResult(compareTarget.image, compareTarget.job));
dialog.addEventListener("close", () => {
  $("compare-before").removeAttribute("src");
  $("compare-after").removeAttribute("src");
});

route();
