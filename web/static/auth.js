// album-enhance: how the pages authenticate. A person signed in with email and password holds a session cookie
// (HttpOnly: no script reads it) and its CSRF token in a readable cookie, sent back in the X-CSRF-Token header of
// every change. An API key pasted on the "sign in with an API key" page goes in the Authorization header instead.
"use strict";

const CSRF_COOKIE_NAME = "__Host-ae_csrf";

function csrfToken() {
  const pair = document.cookie.split("; ").find((item) => item.startsWith(`${CSRF_COOKIE_NAME}=`));
  return pair ? decodeURIComponent(pair.slice(CSRF_COOKIE_NAME.length + 1)) : null;
}

function pastedKey() { return typeof apiKey === "function" ? apiKey() : null; }

function hasSession() { return csrfToken() !== null; }

function authHeaders() {
  const key = pastedKey();
  if (key) return { Authorization: `Bearer ${key}` };
  const token = csrfToken();
  return token ? { "X-CSRF-Token": token } : {};
}

function forgetSession() {
  document.cookie = `${CSRF_COOKIE_NAME}=; Max-Age=0; Path=/; Secure; SameSite=Strict`;
}

// Ends this browser's session on the server (the cookies go with the answer); nothing to do with a pasted key.
async function endSession() {
  if (pastedKey() || !hasSession()) return;
  const ended = fetch("/api/auth/signout", { method: "POST", headers: authHeaders() });
  forgetSession();  // at once: the page no longer counts as signed in while the request is under way
  await ended.catch(() => null);
}
