#!/usr/bin/env node
// A real OpenID Provider (panva's certified `oidc-provider`) for dagctl's OIDC login tests.
// Listens on 127.0.0.1 over plain HTTP and prints exactly one line on stdout once it listens:
//
//   READY http://127.0.0.1:PORT        (the issuer; discovery at /.well-known/openid-configuration)
//
// Usage (every option also reads the environment variable named in brackets):
//
//   node tests/web-harness/oidc-provider.mjs --port 0 \
//     --client-id dagctl --client-secret s3cret \
//     --redirect-uri http://127.0.0.1:8080/auth/oidc/callback[,http://...] \
//     [--post-logout-redirect-uri http://127.0.0.1:8080/[,...]]
//
//   --port N                    [OIDC_PORT]       0 (default) picks a free port
//   --client-id ID              [OIDC_CLIENT_ID]  default dagctl
//   --client-secret SECRET      [OIDC_CLIENT_SECRET] default s3cret
//   --redirect-uri URI[,URI]    [OIDC_REDIRECT_URIS] required
//   --post-logout-redirect-uri URI[,URI] [OIDC_POST_LOGOUT_REDIRECT_URIS] optional
//
// The packages come from $DAGCTL_NODE_TOOLS (what scripts/install-node-tools.sh prints), else from
// an ordinary node_modules next to this file.
//
// The one client is confidential: grant authorization_code, response_type code, registered as
// client_secret_basic (oidc-provider accepts client_secret_post from such a client too), PKCE
// required with S256 only, scopes openid profile email groups. Claims of the requested scopes,
// `groups` included, are in the ID token and at userinfo. Consent is granted without a page.
//
// Users (password is `<id>-pw`):
//   alice [dagctl-admins]  olga [dagctl-ops]  uma [dagctl-users]  victor [dagctl-viewers]  nobody []
//
// Login page (GET /interaction/<uid>): form#login-form, input[name=login], input[name=password],
// button[type=submit]; a refused login shows the page again with p#login-error ("Invalid login or
// password."), HTTP 401.
//
// Logs go to stderr. SIGTERM / SIGINT close the server and exit 0.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// stdout carries the READY line only: whatever oidc-provider or Node prints goes to stderr.
console.log = (...a) => console.error(...a);
console.info = (...a) => console.error(...a);

async function load(name) {
  const dir = process.env.DAGCTL_NODE_TOOLS;
  if (dir) {
    const resolved = createRequire(path.join(path.resolve(dir), 'package.json')).resolve(name);
    return import(pathToFileURL(resolved).href);
  }
  return import(name);
}

export const USERS = {
  alice: { name: 'Alice Admin', email: 'alice@example.test', groups: ['dagctl-admins'] },
  olga: { name: 'Olga Ops', email: 'olga@example.test', groups: ['dagctl-ops'] },
  uma: { name: 'Uma User', email: 'uma@example.test', groups: ['dagctl-users'] },
  victor: { name: 'Victor Viewer', email: 'victor@example.test', groups: ['dagctl-viewers'] },
  nobody: { name: 'No Body', email: 'nobody@example.test', groups: [] },
};
const SCOPES = 'openid profile email groups';

function parseArgs(argv) {
  const opts = {
    port: process.env.OIDC_PORT ?? '0',
    clientId: process.env.OIDC_CLIENT_ID ?? 'dagctl',
    clientSecret: process.env.OIDC_CLIENT_SECRET ?? 's3cret',
    redirectUris: process.env.OIDC_REDIRECT_URIS ?? '',
    postLogoutRedirectUris: process.env.OIDC_POST_LOGOUT_REDIRECT_URIS ?? '',
  };
  const names = {
    '--port': 'port',
    '--client-id': 'clientId',
    '--client-secret': 'clientSecret',
    '--redirect-uri': 'redirectUris',
    '--redirect-uris': 'redirectUris',
    '--post-logout-redirect-uri': 'postLogoutRedirectUris',
  };
  for (let i = 0; i < argv.length; i += 1) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (!(flag in names)) throw new Error(`unknown option ${flag}`);
    if (value === undefined) {
      i += 1;
      value = argv[i];
      if (value === undefined) throw new Error(`${flag} needs a value`);
    }
    opts[names[flag]] = value;
  }
  const list = (s) => s.split(',').map((u) => u.trim()).filter(Boolean);
  opts.redirectUris = list(opts.redirectUris);
  opts.postLogoutRedirectUris = list(opts.postLogoutRedirectUris);
  opts.port = Number(opts.port);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port must be 0..65535');
  if (opts.redirectUris.length === 0) throw new Error('--redirect-uri is required');
  if (!opts.clientId || !opts.clientSecret) throw new Error('--client-id and --client-secret must not be empty');
  return opts;
}

// The provider's store: a plain in-memory Map with expiry (one process, test lifetime). Our own so
// that oidc-provider does not warn about its development-only adapter.
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);
function memoryAdapterFactory() {
  const store = new Map(); // key -> { value, exp (ms) }
  const get = (key) => {
    const e = store.get(key);
    if (!e) return undefined;
    if (e.exp !== undefined && e.exp <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return e.value;
  };
  const set = (key, value, expiresIn) => store.set(key, { value, exp: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
  return class MemoryAdapter {
    constructor(model) { this.model = model; }

    key(id) { return `${this.model}:${id}`; }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      if (this.model === 'Session') set(`sessionUid:${payload.uid}`, id, expiresIn);
      if (payload.userCode) set(`userCode:${payload.userCode}`, id, expiresIn);
      if (payload.grantId && GRANTABLE.has(this.model)) {
        const keys = get(`grant:${payload.grantId}`) ?? [];
        keys.push(key);
        set(`grant:${payload.grantId}`, keys, expiresIn);
      }
      set(key, payload, expiresIn);
    }

    async find(id) { return get(this.key(id)); }

    async findByUid(uid) { const id = get(`sessionUid:${uid}`); return id && this.find(id); }

    async findByUserCode(code) { const id = get(`userCode:${code}`); return id && this.find(id); }

    async consume(id) { const v = get(this.key(id)); if (v) v.consumed = Math.floor(Date.now() / 1000); }

    async destroy(id) { store.delete(this.key(id)); }

    async revokeByGrantId(grantId) {
      for (const key of get(`grant:${grantId}`) ?? []) store.delete(key);
      store.delete(`grant:${grantId}`);
    }
  };
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, { login = '', error = '' } = {}) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test IdP: sign in</title></head>
<body>
<h1>Test IdP: sign in</h1>
${error ? `<p id="login-error" class="error" role="alert" style="color:#b00">${esc(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Login <input id="login" name="login" value="${esc(login)}" autofocus></label>
  <label>Password <input id="password" name="password" type="password"></label>
  <button id="submit" type="submit">Sign in</button>
</form>
</body></html>
`;
}

async function readForm(req, limit = 64 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('form body too large');
  }
  return new URLSearchParams(body);
}

function send(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(html),
  });
  res.end(html);
}

// Grants every requested scope and claim to the (first-party) client, so there is no consent page.
async function grantAll(provider, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  grant.addOIDCScope(prompt.details.missingOIDCScope?.join(' ') ?? SCOPES);
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

// The interaction routes: our login page, and consent granted on the spot.
async function interaction(provider, req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return send(res, 404, 'not found');
  const [, uid, login] = m;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, `<p id="interaction-error">${esc(err.message)}</p>`);
  }
  if (details.uid !== uid) return send(res, 400, '<p id="interaction-error">interaction mismatch</p>');
  const { name } = details.prompt;

  if (name === 'consent') {
    const grantId = await grantAll(provider, details);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (name !== 'login') return send(res, 400, `<p id="interaction-error">unsupported prompt ${esc(name)}</p>`);

  if (!login) {
    if (req.method !== 'GET') return send(res, 405, 'method not allowed');
    return send(res, 200, loginPage(uid));
  }
  if (req.method !== 'POST') return send(res, 405, 'method not allowed');
  const form = await readForm(req);
  const user = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  if (!Object.hasOwn(USERS, user) || password !== `${user}-pw`) {
    console.error(`oidc-provider.mjs: refused login for ${JSON.stringify(user)}`);
    return send(res, 401, loginPage(uid, { login: user, error: 'Invalid login or password.' }));
  }
  console.error(`oidc-provider.mjs: ${user} logged in`);
  return provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`oidc-provider.mjs: ${err.message}`);
    process.exit(2);
  }

  const server = http.createServer();
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const { default: Provider } = await load('oidc-provider');
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    clients: [{
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      redirect_uris: opts.redirectUris,
      post_logout_redirect_uris: opts.postLogoutRedirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPES,
    }],
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    pkce: { methods: ['S256'], required: () => true },
    scopes: ['openid'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    async findAccount(_ctx, id) {
      const user = Object.hasOwn(USERS, id) ? USERS[id] : undefined;
      if (!user) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            name: user.name,
            preferred_username: id,
            email: user.email,
            email_verified: true,
            groups: [...user.groups],
          };
        },
      };
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      if (ctx.oidc.client.clientId !== opts.clientId) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope(SCOPES);
      await grant.save();
      return grant;
    },
    adapter: memoryAdapterFactory(),
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      ClientCredentials: 600,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 3600,
      RefreshToken: 86400,
      Session: 86400,
    },
    interactions: { url: (_ctx, i) => `/interaction/${i.uid}` },
    features: {
      devInteractions: { enabled: false },
      // The default pages load web fonts from the internet; these are plain and local.
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test IdP: sign out</title></head><body>
<h1>Sign out of the test IdP?</h1>${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button></body></html>`;
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = '<!DOCTYPE html><html><body><h1 id="logged-out">Signed out of the test IdP</h1></body></html>';
        },
      },
    },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys: [signingKey] },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>oops! something went wrong</h1><pre id="oidc-error">${
        esc(Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n'))}</pre></body></html>`;
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider.mjs: server_error', err));

  const callback = provider.callback();
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/interaction/')) {
      interaction(provider, req, res, url).catch((err) => {
        console.error('oidc-provider.mjs: interaction failed', err);
        if (!res.headersSent) send(res, 500, `<p id="interaction-error">${esc(err.message)}</p>`);
        else res.destroy();
      });
    } else {
      callback(req, res);
    }
  });

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`oidc-provider.mjs: ${signal}, stopping`);
    setTimeout(() => process.exit(0), 3000).unref();
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  console.error('oidc-provider.mjs:', err);
  process.exit(1);
});
