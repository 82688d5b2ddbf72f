// piigate step-up page (templates/stepup.html). Without this script the code forms post as
// plain HTML; with it they post as JSON, and WebAuthn, SMS sending and push work in place.
// The grant never reaches this script: the server puts it in an HttpOnly cookie.
import {api, fromBase64url, toBase64url} from "./console.js";

const root = document.getElementById("stepup");
const challenge = root ? root.dataset.challenge : "";
const returnTo = root ? root.dataset.returnTo : "/";
const statusBox = document.getElementById("stepup-status");
const errorBox = document.getElementById("stepup-error");
const POLL_MS = 2000;
const FAILED = "That did not work. Try again.";
const STALE = "This page has expired. Reload it and try again.";
let finished = false;

function status(text) { if (statusBox) statusBox.textContent = text || ""; }
function fail(text) { if (errorBox) errorBox.textContent = text || ""; }
function sleep(ms) { return new Promise((done) => setTimeout(done, ms)); }
function encoded(value) { return encodeURIComponent(value); }
function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function localTimes() {
  for (const node of document.querySelectorAll("time[data-local]")) {
    const at = new Date(node.dateTime);
    if (!Number.isNaN(at.getTime())) {
      node.textContent = at.toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
    }
  }
}

function lock(locked) {
  for (const control of root.querySelectorAll("button, input:not([type=hidden])")) {
    control.disabled = locked;
  }
}

// Approved: say until when the access lasts, then go back where the request came from.
function approved(body) {
  finished = true;
  fail("");
  lock(true);
  const until = body.grant_expires_at ? ` Your access lasts until ${clock(body.grant_expires_at)}.` : "";
  status(`Approved.${until} Taking you back…`);
  setTimeout(() => window.location.assign(body.return_to || "/"), 1200);
}

// Expired, denied or answered elsewhere: the page, rendered again, says which.
function closed() { window.location.reload(); }

// What the server answered to a proof; `input` gets the focus back after a failure.
function answered(answer, input) {
  const body = answer.body || {};
  if (answer.ok && body.state === "approved") { approved(body); return; }
  if (body.state && body.state !== "pending") { closed(); return; }
  status("");
  fail(answer.status === 403 ? STALE : (body.error || FAILED));
  if (input) { input.value = ""; input.focus(); }
}

function verify(proof) {
  const path = `/stepup/${encoded(challenge)}/verify?return_to=${encoded(returnTo)}`;
  return api("POST", path, proof, {"Accept": "application/json"});
}

function codeForms() {
  for (const form of root.querySelectorAll("form.code-form")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = form.querySelector("input[name=code]");
      fail("");
      status("Checking…");
      lock(true);
      const answer = await verify({method: form.dataset.method, code: input.value.replace(/\s+/g, "")});
      if (!finished) lock(false);
      answered(answer, input);
    });
  }
}

// -- WebAuthn: options from /v1, the assertion to the page's handler ----------------------------
function assertionJson(credential) {
  const r = credential.response;
  return {
    id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(r.clientDataJSON),
      authenticatorData: toBase64url(r.authenticatorData),
      signature: toBase64url(r.signature),
      userHandle: r.userHandle ? toBase64url(r.userHandle) : null,
    },
  };
}

async function webauthn(button) {
  fail("");
  status("Follow your browser's prompt to use your passkey or security key.");
  lock(true);
  try {
    const options = await api("GET", `/v1/challenges/${encoded(challenge)}/webauthn`);
    if (!options.ok) { answered(options, null); return; }
    const o = options.body.publicKey;
    let credential;
    try {
      credential = await navigator.credentials.get({publicKey: {
        ...o, challenge: fromBase64url(o.challenge),
        allowCredentials: (o.allowCredentials || []).map((c) => ({...c, id: fromBase64url(c.id)})),
      }});
    } catch (error) {
      credential = null;
    }
    if (!credential) { status(""); fail(FAILED); return; }
    status("Checking…");
    answered(await verify({method: "webauthn", credential: assertionJson(credential)}), null);
  } finally {
    if (!finished) { lock(false); button.focus(); }
  }
}

// -- Push: send, show the number, follow the status ---------------------------------------------
let polling = false;

async function poll() {
  if (polling) return;
  polling = true;
  const path = `/stepup/${encoded(challenge)}/status?return_to=${encoded(returnTo)}`;
  for (;;) {
    const answer = await api("GET", path);
    const body = answer.body || {};
    if (answer.ok && body.state === "approved") {
      // Approved before this page opened, its grant collected already: the page says so.
      if (root.dataset.state !== "approved" || body.grant_expires_at) approved(body);
      return;
    }
    if (answer.ok && body.state !== "pending") { closed(); return; }
    if (!answer.ok && answer.status !== 429 && answer.status < 500) {
      fail(answer.status === 403 ? STALE : FAILED);
      polling = false;
      return;
    }
    await sleep(POLL_MS);
  }
}

async function push(button) {
  fail("");
  button.disabled = true;
  const sent = await api("POST", `/v1/challenges/${encoded(challenge)}/push`);
  button.disabled = false;
  if (sent.status === 429) {
    fail("Too many requests were sent to your phone. Use another method, or wait and try again.");
    return;
  }
  if (sent.status === 409) { closed(); return; }
  if (!sent.ok) { fail(sent.status === 403 ? STALE : FAILED); return; }
  const box = document.getElementById("push-number-box");
  document.getElementById("push-number").textContent = String(sent.body.number);
  box.classList.remove("hidden");
  box.scrollIntoView({block: "center"});
  button.classList.remove("primary");
  button.textContent = "Send the request again";
  status("Waiting for you to approve on your phone…");
  poll();
}

// -- SMS: send (and send again) through /v1 ------------------------------------------------------
function smsForm(form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("sms-send-button");
    fail("");
    button.disabled = true;
    const sent = await api("POST", `/v1/challenges/${encoded(challenge)}/sms`);
    button.disabled = false;
    if (sent.ok) {
      status(`We sent a code to ${sent.body.to}.`);
      button.textContent = "Send a new code";
      document.getElementById("sms-code").focus();
    } else if (sent.status === 429) {
      fail("Too many codes were sent. Wait a while, then try again.");
    } else if (sent.status === 503) {
      fail("The code could not be sent. Try again in a moment.");
    } else {
      fail(sent.status === 403 ? STALE : "A code cannot be sent for this request.");
    }
  });
}

function start() {
  if (!root) return;
  localTimes();
  if (root.dataset.state !== "pending" && root.dataset.state !== "approved") return;
  codeForms();
  const key = document.getElementById("webauthn-start");
  if (key && window.PublicKeyCredential && navigator.credentials) {
    key.hidden = false;
    key.addEventListener("click", () => webauthn(key));
  } else if (key) {
    key.insertAdjacentText("afterend", "This browser cannot use a passkey here.");
  }
  const phone = document.getElementById("push-start");
  if (phone) {
    phone.hidden = false;
    phone.addEventListener("click", () => push(phone));
  }
  const sms = document.getElementById("sms-send");
  if (sms) smsForm(sms);
  if (root.dataset.poll === "yes") {
    if (root.dataset.state === "pending") status("Waiting for approval…");
    poll();
  }
}

start();
