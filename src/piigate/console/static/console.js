// piigate console: what every page's script shares (an ES module, loaded from this origin).
// api(): fetch() on this origin with the CSRF token of the page, JSON in and out.

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export async function api(method, path, body, extraHeaders) {
  const headers = {"X-CSRF-Token": csrfToken(), ...(extraHeaders || {})};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, credentials: "same-origin", headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  return {status: response.status, ok: response.ok, body: data};
}

// base64url ⇄ ArrayBuffer, for WebAuthn.
export function toBase64url(buffer) {
  return btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)), (c) => c.charCodeAt(0));
}

// Show a message in the element with id `id` (role="status" or role="alert" in the page).
export function say(id, text) {
  const node = document.getElementById(id);
  if (node) { node.textContent = text; node.classList.toggle("hidden", !text); }
}
