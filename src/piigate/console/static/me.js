// My security: adding a passkey (navigator.credentials.create needs a script). Every other
// change on the page is a plain form.
import {api, fromBase64url, toBase64url} from "/static/console.js";

const RESUME = "/me?resume=webauthn";

function show(form, text) {
  const status = form.querySelector("[data-status]");
  if (status) { status.textContent = text; status.classList.toggle("hidden", !text); }
}

// The creation options of POST /v1/factors/webauthn/options, with the binary fields decoded.
function creationOptions(publicKey) {
  return {
    ...publicKey,
    challenge: fromBase64url(publicKey.challenge),
    user: {...publicKey.user, id: fromBase64url(publicKey.user.id)},
    excludeCredentials: (publicKey.excludeCredentials || []).map(
      (c) => ({...c, id: fromBase64url(c.id)})),
  };
}

// The PublicKeyCredential as JSON (WebAuthn Level 3's RegistrationResponseJSON).
function credentialJson(credential) {
  const response = credential.response;
  return {
    id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: {
      clientDataJSON: toBase64url(response.clientDataJSON),
      attestationObject: toBase64url(response.attestationObject),
      transports: response.getTransports ? response.getTransports() : [],
    },
  };
}

// A refusal: to the step-up page when the service opened a challenge, else its message.
function refused(form, answer) {
  const challenge = answer.body && answer.body.challenge;
  if (answer.status === 401 && challenge && challenge.id) {
    const back = encodeURIComponent(RESUME);
    window.location.assign(`/stepup/${encodeURIComponent(challenge.id)}?return_to=${back}`);
    return;
  }
  show(form, (answer.body && answer.body.detail) || "The passkey could not be added.");
}

async function addPasskey(form) {
  const button = form.querySelector("button");
  button.disabled = true;
  show(form, "");
  try {
    if (!window.PublicKeyCredential) {
      show(form, "This browser cannot create passkeys.");
      return;
    }
    const options = await api("POST", "/v1/factors/webauthn/options");
    if (!options.ok) { refused(form, options); return; }
    let credential;
    try {
      credential = await navigator.credentials.create(
        {publicKey: creationOptions(options.body.publicKey)});
    } catch (error) {
      show(form, "No passkey was created (cancelled, timed out, or already registered).");
      return;
    }
    const label = (form.querySelector("input[name=label]") || {}).value || "";
    const saved = await api("POST", "/v1/factors/webauthn",
                            {credential: credentialJson(credential), label: label.trim()});
    if (!saved.ok) { refused(form, saved); return; }
    window.location.assign("/me?done=webauthn");
  } finally {
    button.disabled = false;
  }
}

for (const form of document.querySelectorAll("form.passkey")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    addPasskey(form);
  });
}
