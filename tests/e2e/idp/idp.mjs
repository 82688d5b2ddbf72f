// A real OpenID provider (panva's oidc-provider) for piigate's end-to-end tests.
//
// One public client (PKCE, no client secret), authorization code flow, JWT access tokens for one
// resource server that carry the session's `acr`, `amr` and `auth_time` (RFC 9068 §2.2.1), and a
// login "page" a script answers without a browser. A second client, for piigate's console sign-in
// (ID tokens), when IDP_CONSOLE_CLIENT_ID is set: confidential (client_secret_basic) when
// IDP_CONSOLE_CLIENT_SECRET is set too, else public; PKCE either way.
//
//   GET  /interaction/:uid  → JSON: the prompt and what the client asked for (acr_values, max_age)
//   POST /interaction/:uid  ← form: login=<subject> [acr=<one of ACR_VALUES>] [auth_age=<seconds>]
//                             [amr=<space-separated methods>]; answers 303 back to the provider.
//
// `acr` defaults to the first value the client requested in acr_values (the user "proved" what was
// asked); a lower one simulates a user who could not. `auth_age` backdates auth_time by that many
// seconds, to simulate an old login. Signing keys are generated at start; nothing is stored.
//
// Usage: node idp.mjs [PORT]   (or IDP_PORT; 0 or none picks a free port)
// Environment: IDP_REDIRECT_URI (required), IDP_CLIENT_ID, IDP_AUDIENCE, IDP_RESOURCE,
// IDP_SCOPES, IDP_ACCESS_TOKEN_TTL; IDP_CONSOLE_CLIENT_ID, IDP_CONSOLE_REDIRECT_URI,
// IDP_CONSOLE_CLIENT_SECRET. Prints one line `IDP READY <issuer>` once it accepts requests.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const ACR_VALUES = ['urn:piigate:aal1', 'urn:piigate:aal2', 'urn:piigate:aal3'];
// What a user who reached each level would have used (RFC 8176 method names).
const AMR_FOR_ACR = {
  'urn:piigate:aal1': ['pwd'],
  'urn:piigate:aal2': ['pwd', 'otp'],
  'urn:piigate:aal3': ['pwd', 'hwk'],
};
const ALG = 'ES256';
const MAX_FORM_BYTES = 16 * 1024;

function settings(env, argv) {
  const redirectUri = env.IDP_REDIRECT_URI;
  if (!redirectUri) throw new Error('IDP_REDIRECT_URI is required');
  const audience = env.IDP_AUDIENCE || 'customers-api';
  const port = Number.parseInt(argv[2] ?? env.IDP_PORT ?? '0', 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('bad port');
  return {
    port,
    redirectUri,
    audience,
    clientId: env.IDP_CLIENT_ID || 'piigate-e2e',
    // A resource indicator must be an absolute URI (RFC 8707 §2); the audience need not be.
    resource: env.IDP_RESOURCE || `urn:piigate:resource:${audience}`,
    scopes: env.IDP_SCOPES || 'customers:read customers:write',
    accessTokenTtl: Number.parseInt(env.IDP_ACCESS_TOKEN_TTL || '600', 10),
    console: env.IDP_CONSOLE_CLIENT_ID ? {
      clientId: env.IDP_CONSOLE_CLIENT_ID,
      redirectUri: env.IDP_CONSOLE_REDIRECT_URI,
      secret: env.IDP_CONSOLE_CLIENT_SECRET,
    } : null,
  };
}

function clients(s) {
  const code = {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: ALG,
  };
  const list = [{
    client_id: s.clientId, token_endpoint_auth_method: 'none', redirect_uris: [s.redirectUri], ...code,
  }];
  if (s.console) {
    if (!s.console.redirectUri) throw new Error('IDP_CONSOLE_REDIRECT_URI is required');
    const auth = s.console.secret
      ? { client_secret: s.console.secret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' };
    list.push({ client_id: s.console.clientId, redirect_uris: [s.console.redirectUri], ...auth, ...code });
  }
  return list;
}

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: ALG, use: 'sig' };
}

// The JWT access token format copies only the token's own fields; the session's authentication
// (acr, amr, auth_time) lives on the authorization code (or refresh token) being exchanged.
async function extraTokenClaims(ctx, token) {
  if (token.kind !== 'AccessToken') return undefined;
  const source = ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.RefreshToken;
  if (!source) return undefined;
  return { acr: source.acr, amr: source.amr, auth_time: source.authTime };
}

function configuration(s) {
  const resourceServer = {
    scope: s.scopes,
    audience: s.audience,
    accessTokenFormat: 'jwt',
    accessTokenTTL: s.accessTokenTtl,
    jwt: { sign: { alg: ALG } },
  };
  return {
    clients: clients(s),
    clientDefaults: { id_token_signed_response_alg: ALG },
    jwks: { keys: [signingKey()] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    acrValues: ACR_VALUES,
    // ID tokens always say how the user authenticated (as Keycloak's and Okta's do): a relying
    // party such as piigate's console reads acr, amr and auth_time without asking for them.
    claims: {
      acr: null, amr: null, auth_time: null, sid: null, openid: ['sub', 'acr', 'amr', 'auth_time'],
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => s.resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator !== s.resource) throw new errors.InvalidTarget();
          return resourceServer;
        },
      },
    },
    extraTokenClaims,
    // The clients are first party: they get what they ask for, without a consent prompt.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid');
      grant.addResourceScope(s.resource, s.scopes);
      await grant.save();
      return grant;
    },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    renderError: async (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(out);
    },
    ttl: {
      AccessToken: s.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 600,
      Grant: 600,
    },
  };
}

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login answer as an interaction result, or a string saying what is wrong with the form.
function loginResult(form, params) {
  const accountId = form.get('login');
  if (!accountId) return 'login is required';
  const requested = (params.acr_values ?? '').split(' ').filter(Boolean);
  const acr = form.get('acr') || requested[0] || ACR_VALUES[0];
  if (!ACR_VALUES.includes(acr)) return `acr must be one of ${ACR_VALUES.join(' ')}`;
  const age = form.get('auth_age') ?? '0';
  if (!/^\d+$/.test(age)) return 'auth_age must be a whole number of seconds';
  const amr = form.get('amr') ? form.get('amr').split(' ').filter(Boolean) : AMR_FOR_ACR[acr];
  const ts = Math.floor(Date.now() / 1000) - Number.parseInt(age, 10);
  return { login: { accountId, acr, amr, ts, remember: false } };
}

async function interaction(provider, req, res) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (error) {
    reply(res, 400, { error: 'invalid_interaction', error_description: error.message });
    return;
  }
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    reply(res, 200, {
      uid,
      prompt: prompt.name,
      reasons: prompt.reasons,
      params: {
        client_id: params.client_id,
        scope: params.scope,
        acr_values: params.acr_values,
        max_age: params.max_age,
        login_hint: params.login_hint,
      },
    });
    return;
  }
  if (req.method !== 'POST') {
    reply(res, 405, { error: 'method_not_allowed' });
    return;
  }
  if (prompt.name !== 'login') {
    reply(res, 400, { error: 'unexpected_prompt', error_description: prompt.name });
    return;
  }
  const result = loginResult(await readForm(req), params);
  if (typeof result === 'string') {
    reply(res, 400, { error: 'invalid_request', error_description: result });
    return;
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function main() {
  const s = settings(process.env, process.argv);
  let provider;
  let handle;
  const server = http.createServer((req, res) => {
    if (/^\/interaction\/[^/]+$/.test(new URL(req.url, 'http://idp').pathname)) {
      interaction(provider, req, res).catch((error) => {
        process.stderr.write(`interaction failed: ${error.stack}\n`);
        if (!res.headersSent) reply(res, 500, { error: 'server_error' });
      });
      return;
    }
    handle(req, res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(s.port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration(s));
  provider.on('server_error', (ctx, error) => process.stderr.write(`${error.stack}\n`));
  handle = provider.callback();
  // Nothing is stored: stopping is exiting.
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
  process.stdout.write(`IDP READY ${issuer}\n`);
}

main().catch((error) => {
  process.stderr.write(`idp: ${error.message}\n`);
  process.exit(1);
});
