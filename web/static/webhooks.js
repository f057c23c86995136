// album-enhance web app: the webhook settings panel (#/webhooks). Loaded before app.js, whose helpers (api,
// getJson, show, say, failed) it calls only once the page runs; app.js's router opens it with openWebhooks().
"use strict";

const WEBHOOK_EVENTS = ["batch.completed", "batch.cancelled", "batch.failed", "job.completed", "job.failed"];
const hooks = { endpoints: [], open: null, poll: null };
const byId = (id) => document.getElementById(id);

function el(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

function buildWebhooksView() {
  const events = WEBHOOK_EVENTS.map((name) =>
    el("label", { className: "check" }, el("input", { type: "checkbox", name: "event", value: name, checked: true }), " ", el("span", { textContent: name })),
  );
  const view = el(
    "section",
    { id: "view-webhooks", className: "view", hidden: true },
    el("div", { className: "heading" }, el("div", {}, el("a", { href: "#/", className: "back", innerHTML: "&larr; Albums" }), el("h1", { textContent: "Webhooks" }))),
    el("p", { className: "muted", textContent: "We POST a signed message (Standard Webhooks) to your endpoints when a batch or a photo finishes, and retry for up to a day until they answer 2xx." }),
    el(
      "div",
      { className: "hooks-layout" },
      el(
        "form",
        { id: "hook-form", className: "panel stack" },
        el("h2", { textContent: "Add an endpoint" }),
        el("label", { htmlFor: "hook-url", textContent: "URL" }),
        el("input", { id: "hook-url", type: "url", required: true, placeholder: "https://example.com/album-enhance", maxLength: 2000 }),
        el("fieldset", { className: "hook-events" }, el("legend", { textContent: "Events" }), ...events),
        el("label", { htmlFor: "hook-description", textContent: "Description (optional)" }),
        el("input", { id: "hook-description", maxLength: 200 }),
        el("p", { id: "hook-error", className: "error", role: "alert" }),
        el("button", { type: "submit", className: "primary", textContent: "Add endpoint" }),
      ),
      el(
        "div",
        { className: "hooks-main" },
        el("div", { id: "hook-secret", className: "panel secret", hidden: true }),
        el("ul", { id: "hook-list", className: "hook-list", ariaLabel: "Endpoints" }),
        el("p", { id: "hooks-empty", className: "muted", hidden: true, textContent: "No endpoints yet." }),
        el(
          "section",
          { id: "hook-deliveries", className: "panel", hidden: true },
          el("div", { className: "heading" }, el("h2", { id: "deliveries-title", textContent: "Deliveries" }), el("button", { id: "deliveries-refresh", type: "button", className: "ghost small", textContent: "Refresh" })),
          el("div", { className: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ...["When", "Event", "Status", "Attempts", "Last answer", ""].map((h) => el("th", { scope: "col", textContent: h })))), el("tbody", { id: "delivery-rows" }))),
        ),
        el(
          "section",
          { className: "panel" },
          el("h2", { textContent: "Callback secret" }),
          el("p", { className: "muted", innerHTML: "Signs the <code>callbackUrl</code> of an enhance request. Rotating keeps the old one valid for a grace period." }),
          el("button", { id: "callback-secret", type: "button", className: "ghost", textContent: "Create or rotate the callback secret" }),
        ),
      ),
    ),
  );
  document.getElementById("main").append(view);
}

function showSecret(title, secret) {
  const box = byId("hook-secret");
  box.replaceChildren(
    el("strong", { textContent: title }),
    el("p", { className: "muted", textContent: "Copy it now: it is not shown again." }),
    el("code", { id: "hook-secret-value", textContent: secret }),
  );
  box.hidden = false;
}

async function openWebhooks() {
  const { endpoints } = await getJson("/api/webhooks");
  hooks.endpoints = endpoints;
  renderEndpoints();
  show("webhooks");
  if (hooks.open && endpoints.some((e) => e.id === hooks.open)) await loadDeliveries(hooks.open);
  else byId("hook-deliveries").hidden = true;
}

function renderEndpoints() {
  byId("hooks-empty").hidden = hooks.endpoints.length > 0;
  byId("hook-list").replaceChildren(
    ...hooks.endpoints.map((endpoint) => {
      const state = endpoint.enabled ? "Enabled" : `Disabled${endpoint.disabledReason ? `: ${endpoint.disabledReason}` : ""}`;
      const act = (label, handler, extra = "") => el("button", { type: "button", className: `ghost small ${extra}`, textContent: label, onclick: () => handler(endpoint).catch(failed) });
      return el(
        "li",
        { className: "panel hook", dataset: { id: endpoint.id, enabled: String(endpoint.enabled) } },
        el("div", {}, el("strong", { className: "hook-url", textContent: endpoint.url }), el("p", { className: "muted", textContent: `${endpoint.events.join(", ")}${endpoint.description ? ` · ${endpoint.description}` : ""}` }), el("span", { className: `badge-state ${endpoint.enabled ? "on" : "off"}`, textContent: state })),
        el(
          "div",
          { className: "actions" },
          act("Send test", sendTest, "hook-test"),
          act("Deliveries", (e) => loadDeliveries(e.id), "hook-open"),
          act(endpoint.enabled ? "Disable" : "Enable", toggle, "hook-toggle"),
          act("Rotate secret", rotate),
          act("Delete", remove, "danger"),
        ),
      );
    }),
  );
}

async function sendTest(endpoint) {
  await api(`/api/webhooks/${endpoint.id}/test`, { method: "POST" });
  say("Test message sent.");
  await loadDeliveries(endpoint.id);
}

async function toggle(endpoint) {
  await api(`/api/webhooks/${endpoint.id}`, { method: "PATCH", json: { enabled: !endpoint.enabled } });
  await openWebhooks();
}

async function rotate(endpoint) {
  const rotated = await (await api(`/api/webhooks/${endpoint.id}`, { method: "PATCH", json: { rotateSecret: true } })).json();
  showSecret("New signing secret (the old one stays valid for the grace period)", rotated.secret);
}

async function remove(endpoint) {
  if (!confirm(`Delete the endpoint ${endpoint.url} and its delivery log?`)) return;
  await api(`/api/webhooks/${endpoint.id}`, { method: "DELETE" });
  if (hooks.open === endpoint.id) hooks.open = null;
  await openWebhooks();
}

async function loadDeliveries(endpointId) {
  hooks.open = endpointId;
  clearTimeout(hooks.poll);
  const endpoint = hooks.endpoints.find((e) => e.id === endpointId);
  const { deliveries } = await getJson(`/api/webhooks/${endpointId}/deliveries`);
  byId("deliveries-title").textContent = `Deliveries to ${endpoint ? endpoint.url : endpointId}`;
  byId("delivery-rows").replaceChildren(
    ...deliveries.map((delivery) => {
      const last = delivery.attempts[delivery.attempts.length - 1];
      const answer = !last ? "—" : last.statusCode ? `HTTP ${last.statusCode} · ${last.latencyMs} ms` : last.error || "no answer yet";
      const tries = delivery.attempts.map((a) => `#${a.number}: ${a.statusCode ? `HTTP ${a.statusCode}` : a.error || "unfinished"}${a.latencyMs != null ? ` (${a.latencyMs} ms)` : ""}`).join("\n");
      const redeliver = el("button", { type: "button", className: "ghost small", textContent: "Redeliver", onclick: () => redeliverOne(endpointId, delivery.id).catch(failed) });
      return el(
        "tr",
        { dataset: { status: delivery.status } },
        el("td", { textContent: new Date(delivery.createdAt).toLocaleString() }),
        el("td", {}, el("code", { textContent: delivery.eventType })),
        el("td", {}, el("span", { className: `delivery-status ${delivery.status.toLowerCase()}`, textContent: delivery.status, title: delivery.error || "" })),
        el("td", { className: "num", textContent: String(delivery.attempts.length), title: tries }),
        el("td", { textContent: answer }),
        el("td", {}, delivery.status === "PENDING" ? "" : redeliver),
      );
    }),
  );
  byId("hook-deliveries").hidden = false;
  // Pending deliveries change by themselves (retries): look again while this view shows them.
  if (deliveries.some((d) => d.status === "PENDING")) {
    hooks.poll = setTimeout(() => {
      if (!byId("view-webhooks").hidden && hooks.open === endpointId) loadDeliveries(endpointId).catch(failed);
    }, 1000);
  }
}

async function redeliverOne(endpointId, deliveryId) {
  await api(`/api/webhooks/${endpointId}/deliveries/${deliveryId}/redeliver`, { method: "POST" });
  say("Sent again, with the same webhook-id.");
  await loadDeliveries(endpointId);
}

buildWebhooksView();

byId("hook-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const events = [...document.querySelectorAll('#hook-form input[name="event"]:checked')].map((box) => box.value);
  const description = byId("hook-description").value.trim() || null;
  try {
    const created = await (await api("/api/webhooks", { method: "POST", json: { url: byId("hook-url").value.trim(), events, description } })).json();
    byId("hook-error").textContent = "";
    byId("hook-url").value = "";
    byId("hook-description").value = "";
    showSecret("Signing secret of the new endpoint", created.secret);
    await openWebhooks();
  } catch (error) {
    byId("hook-error").textContent = error.message;
  }
});
byId("deliveries-refresh").addEventListener("click", () => hooks.open && loadDeliveries(hooks.open).catch(failed));
byId("callback-secret").addEventListener("click", async () => {
  try {
    const { secret } = await (await api("/api/webhooks/callback-secret", { method: "POST" })).json();
    showSecret("Callback secret", secret);
  } catch (error) {
    failed(error);
  }
});
