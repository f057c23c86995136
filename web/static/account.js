// album-enhance account pages: sign up, confirm the email, sign in, forgot / reset the password, and the account
// itself (sessions, API keys, export, deletion). Hash routes: #/signin, #/signup, #/verify/<token>, #/forgot,
// #/reset/<token>, #/ (the account). Mailed links carry their token after the #, so it never reaches a server log.
"use strict";

const el = (id) => document.getElementById(id);

async function call(path, { method = "POST", json } = {}) {
  const init = { method, headers: { ...authHeaders() } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const response = await fetch(path, init);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error(body?.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function notice(message, kind = "ok") {
  const box = el("acct-notice");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

function showPage(name) {
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== `page-${name}`;
  const first = el(`page-${name}`).querySelector("input, button, a");
  if (first && name !== "account") first.focus();
}

// Moves to another page with a message for it (the hashchange that follows would otherwise clear it).
let pendingNotice = null;
function go(hash, message = "") {
  if (location.hash === hash) { notice(message); route(); return; }
  pendingNotice = message;
  location.hash = hash;
}

// "Chrome on Linux" rather than the whole User-Agent string (which the title of the row still shows).
function browserName(agent) {
  if (!agent) return "Unknown browser";
  const browser = [["Edg/", "Edge"], ["Firefox/", "Firefox"], ["Chrome/", "Chrome"], ["Safari/", "Safari"]]
    .find(([mark]) => agent.includes(mark))?.[1];
  const system = [["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"], ["Windows", "Windows"],
    ["Mac OS", "macOS"], ["Linux", "Linux"]].find(([mark]) => agent.includes(mark))?.[1];
  return browser ? `${browser}${system ? ` on ${system}` : ""}` : agent.slice(0, 60);
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");

function row(what, detail, button) {
  const item = document.createElement("li");
  const text = document.createElement("div");
  text.className = "what";
  const name = document.createElement("span");
  name.textContent = what;
  const more = document.createElement("span");
  more.className = "muted";
  more.textContent = detail;
  text.append(name, more);
  item.append(text);
  if (button) item.append(button);
  return item;
}

function action(label, onClick, kind = "ghost") {
  const button = Object.assign(document.createElement("button"), { type: "button", textContent: label });
  button.className = `${kind} small`;
  button.addEventListener("click", onClick);
  return button;
}

async function showAccount() {
  let account;
  try {
    account = await call("/api/account", { method: "GET" });
  } catch (error) {
    if (error.status === 401) { forgetSession(); location.hash = "#/signin"; return; }
    throw error;
  }
  el("acct-nav").hidden = false;
  el("acct-email").textContent = account.email;
  el("acct-balance").textContent = account.tokenBalance;
  el("delete-password").placeholder = account.hasPassword ? "Your password" : "Your email address";
  el("delete-password").type = account.hasPassword ? "password" : "email";
  el("delete-form").dataset.confirm = account.hasPassword ? "password" : "email";
  el("password-form").hidden = !account.hasPassword;
  el("no-password").hidden = account.hasPassword;
  showPage("account");
  await Promise.all([listSessions(), listKeys()]);
}

async function listSessions() {
  const { sessions } = await call("/api/account/sessions", { method: "GET" });
  el("session-list").replaceChildren(
    ...sessions.map((s) =>
      row(
        `${browserName(s.userAgent)}${s.current ? " (this browser)" : ""}`,
        `from ${s.address || "?"} · signed in ${when(s.createdAt)} · last seen ${when(s.lastSeenAt)}`,
        action(s.current ? "Sign out" : "Revoke", async () => {
          await call(`/api/account/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
          if (s.current) { forgetSession(); go("#/signin", "Signed out."); } else await listSessions();
        }, "ghost danger"),
      ),
    ),
  );
}

async function listKeys() {
  const { keys } = await call("/api/account/keys", { method: "GET" });
  el("key-list").replaceChildren(
    ...keys.map((k) =>
      row(k.name, `created ${when(k.createdAt)} · last used ${when(k.lastUsedAt)}`,
        action("Revoke", async () => {
          if (!confirm(`Revoke the key "${k.name}"? Scripts using it stop working at once.`)) return;
          await call(`/api/account/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
          await listKeys();
        }, "ghost danger")),
    ),
  );
  if (!keys.length) el("key-list").replaceChildren(row("No keys yet.", ""));
}

function form(id, problemId, handler) {
  el(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = el(id).querySelector("button[type=submit]");
    button.disabled = true;
    if (problemId) el(problemId).textContent = "";
    try {
      await handler(new FormData(el(id)));
    } catch (error) {
      if (problemId) el(problemId).textContent = error.message;
      else notice(error.message, "error");
    } finally {
      button.disabled = false;
    }
  });
}

form("acct-signin-form", "signin-problem", async (data) => {
  await call("/api/auth/signin", { json: { email: data.get("email"), password: data.get("password") } });
  location.href = "/#/";
});

form("acct-signup-form", "signup-problem", async (data) => {
  const { message } = await call("/api/auth/signup", { json: { email: data.get("email"), password: data.get("password") } });
  el("acct-signup-form").reset();
  notice(message);
});

form("acct-forgot-form", "forgot-problem", async (data) => {
  const { message } = await call("/api/auth/forgot", { json: { email: data.get("email") } });
  notice(message);
});

form("acct-reset-form", "reset-problem", async (data) => {
  const token = location.hash.split("/")[2] || "";
  const { message } = await call("/api/auth/reset", { json: { token, password: data.get("password") } });
  el("acct-reset-form").reset();
  go("#/signin", message);
});

form("password-form", "password-problem", async (data) => {
  await call("/api/account/password", { json: { currentPassword: data.get("current"), newPassword: data.get("new") } });
  el("password-form").reset();
  notice("Password changed. Every other browser is signed out.");
  await listSessions();
});

form("key-form", null, async (data) => {
  const created = await call("/api/account/keys", { json: { name: data.get("name") } });
  el("key-form").reset();
  el("new-key-value").textContent = created.key;
  el("new-key").hidden = false;
  await listKeys();
});

form("delete-form", "delete-problem", async (data) => {
  if (!confirm("Delete your account, your photos and your results for good?")) return;
  const value = data.get("password");
  const json = el("delete-form").dataset.confirm === "email" ? { email: value } : { password: value };
  await call("/api/account/delete", { json });
  forgetSession();
  go("#/signin", "Your account is deleted. Thank you for trying album-enhance.");
});

el("sign-out-everywhere").addEventListener("click", async () => {
  try {
    await call("/api/account/sessions/revoke-all");
    forgetSession();
    go("#/signin", "Signed out on every browser.");
  } catch (error) { notice(error.message, "error"); }
});

el("acct-sign-out").addEventListener("click", async () => {
  await endSession();
  go("#/signin", "Signed out.");
});

el("export-button").addEventListener("click", async () => {
  try {
    const response = await fetch("/api/account/export", { headers: authHeaders() });
    if (!response.ok) throw new Error((await response.json().catch(() => null))?.error || `HTTP ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = Object.assign(document.createElement("a"), { href: url, download: "album-enhance-export.zip" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) { notice(error.message, "error"); }
});

async function verify(token) {
  showPage("verify");
  try {
    const { message } = await call("/api/auth/verify", { json: { token } });
    el("verify-title").textContent = "Email confirmed";
    el("verify-result").textContent = message;
  } catch (error) {
    el("verify-title").textContent = "This link did not work";
    el("verify-result").textContent = error.message;
  }
}

async function route() {
  const [, page, token] = location.hash.split("/");
  el("acct-nav").hidden = true;
  try {
    if (page === "verify") await verify(decodeURIComponent(token || ""));
    else if (page === "reset") showPage("reset");
    else if (["signin", "signup", "forgot"].includes(page)) showPage(page);
    else if (hasSession()) await showAccount();
    else showPage("signin");
  } catch (error) {
    notice(error.message, "error");
  }
}

window.addEventListener("hashchange", () => {
  notice(pendingNotice || "");
  pendingNotice = null;
  route();
});
route();
