'use strict';
// The identity provider: the real `oidc-provider` (8.8.x, Node 20) running in
// the test process, so tests can count token requests, revoke grants, add
// signing keys and trigger back-channel logout.
const http = require('node:http');
const crypto = require('node:crypto');
const querystring = require('node:querystring');
const { freePort } = require('./ports');

const CLIENT_ID = 'authgate';
const CLIENT_SECRET = 'authgate-e2e-client-secret-0123456789';

/** The IdP's users: password = username. */
const USERS = {
  alice: { password: 'alice', email: 'alice@example.com', email_verified: true, groups: ['admins', 'devs'], name: 'Alice Admin', realmRoles: ['prom-admin'] },
  bob: { password: 'bob', email: 'bob@example.com', email_verified: true, groups: ['users'], name: 'Bob User' },
  carol: { password: 'carol', email: 'carol@example.com', email_verified: false, groups: ['admins'], name: 'Carol Unverified' },
};

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, inner) {
  // No external resources: the browser has no network beyond 127.0.0.1.
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body>${inner}</body></html>`;
}

function loginPage(uid, error) {
  return page('Sign in', `<h1>Sign in</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label>Username <input type="text" name="username" required autofocus></label>
<label>Password <input type="password" name="password" required></label>
<button type="submit" id="submit">Sign in</button>
</form>`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** An RSA signing key as {privateKey (KeyObject), publicJwk, privateJwk}. */
function makeRsaKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, publicKey, privateJwk, publicJwk };
}

/**
 * Starts oidc-provider on a free 127.0.0.1 port.
 * @param {object} o
 * @param {string[]} o.redirectUris registered redirect_uris of the `authgate` client
 * @param {string[]} [o.postLogoutRedirectUris]
 * @param {string} [o.backchannelLogoutUri] e.g. http://127.0.0.1:P/oauth2/backchannel_logout
 * @param {number} [o.accessTokenTtl=3600] seconds
 * @param {number} [o.idTokenTtl=3600] seconds
 * @param {boolean} [o.pkceRequired=true]
 */
async function startIdp(o) {
  const { default: Provider } = await import('oidc-provider');
  const port = o.port || await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const key = makeRsaKey('e2e-key-1');
  const extraPublicJwks = [];

  const stats = {
    tokenRequests: [], // {grantType, status} for every POST /token
    backchannel: [], // {ok, sid, accountId, error}
    refreshTokens: [], // RefreshToken models saved
    endSessions: 0,
    countGrant(type) { return this.tokenRequests.filter((r) => r.grantType === type).length; },
    reset() { this.tokenRequests.length = 0; this.backchannel.length = 0; },
  };

  const grantIds = new Set();

  const configuration = {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: o.redirectUris,
      post_logout_redirect_uris: o.postLogoutRedirectUris || [],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(o.backchannelLogoutUri ? {
        backchannel_logout_uri: o.backchannelLogoutUri,
        backchannel_logout_session_required: true,
      } : {}),
    }],
    async findAccount(ctx, id) {
      const u = USERS[id];
      if (!u) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: u.email,
            email_verified: u.email_verified,
            preferred_username: id,
            name: u.name,
            groups: [...u.groups],
            // Keycloak's shape for realm roles (policies.test.js reads it).
            realm_access: { roles: [...(u.realmRoles || [])] },
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      groups: ['groups', 'realm_access'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Sign out', `<h1>Sign out?</h1>${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Signed out', '<h1 id="signed-out">Signed out</h1>');
        },
      },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
    },
    pkce: { required: () => o.pkceRequired !== false },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: false,
    ttl: {
      AccessToken: o.accessTokenTtl || 3600,
      IdToken: o.idTokenTtl || 3600,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
    cookies: {
      keys: ['e2e-cookie-signing-key-not-secret'],
      // SameSite=None without Secure is rejected by Chromium; the IdP is plain http.
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
    },
    jwks: { keys: [key.privateJwk] },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Auto-consent: whatever the client asks for is granted.
    async loadExistingGrant(ctx) {
      const { provider, client, session } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      let grant = grantId ? await provider.Grant.find(grantId) : undefined;
      if (!grant) grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
      const claims = [...(ctx.oidc.requestParamClaims || [])];
      if (claims.length) grant.addOIDCClaims(claims);
      await grant.save();
      grantIds.add(grant.jti);
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('IdP error', `<h1 id="idp-error">${esc(out.error)}</h1><p>${esc(out.error_description || '')}</p>`);
    },
  };

  const provider = new Provider(issuer, configuration);
  provider.proxy = false;

  // Count token requests (by grant type and outcome) after oidc-provider answered.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST' && ctx.path === '/token') {
      stats.tokenRequests.push({ grantType: ctx.oidc?.params?.grant_type, status: ctx.status });
    }
    if (ctx.path === '/jwks' && extraPublicJwks.length && ctx.body && Array.isArray(ctx.body.keys)) {
      ctx.body = { keys: [...ctx.body.keys, ...extraPublicJwks] };
    }
  });
  provider.on('refresh_token.saved', (t) => { stats.refreshTokens.push(t); if (t.grantId) grantIds.add(t.grantId); });
  provider.on('backchannel.success', (ctx, client, accountId, sid) => stats.backchannel.push({ ok: true, accountId, sid }));
  provider.on('backchannel.error', (ctx, err, client, accountId, sid) => stats.backchannel.push({ ok: false, accountId, sid, error: err.message }));
  provider.on('end_session.success', () => { stats.endSessions += 1; });
  provider.on('server_error', (ctx, err) => { process.stderr.write(`oidc-provider server_error: ${err.stack}\n`); });

  const callback = provider.callback();

  async function interaction(req, res) {
    const m = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
    const details = await provider.interactionDetails(req, res);
    const { uid, prompt } = details;
    if (m[2] && req.method === 'POST') {
      const form = querystring.parse(await readBody(req));
      const user = USERS[form.username];
      if (!user || user.password !== form.password) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(loginPage(uid, 'Invalid username or password'));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: String(form.username) } }, { mergeWithLastSubmission: false });
      return;
    }
    if (prompt.name === 'login') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(loginPage(uid));
      return;
    }
    // consent (should not happen with loadExistingGrant, but never block on it)
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    grantIds.add(grantId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((err) => {
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
        res.end(page('Interaction error', `<h1 id="idp-error">${esc(err.message)}</h1>`));
      });
      return;
    }
    callback(req, res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });

  return {
    issuer,
    port,
    provider,
    stats,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    key,
    /** Publishes an extra public key in /jwks (key rotation seen from the RP). */
    addPublicJwk(jwk) { extraPublicJwks.push(jwk); },
    /** Revokes every grant (and its refresh/access tokens) the IdP issued so far. */
    async revokeAllGrants() {
      for (const g of grantIds) {
        await provider.RefreshToken.revokeByGrantId(g);
        await provider.AccessToken.revokeByGrantId(g);
        await provider.Grant.adapter.destroy(g);
      }
    },
    async stop() {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(() => r()));
    },
  };
}

module.exports = { startIdp, makeRsaKey, USERS, CLIENT_ID, CLIENT_SECRET };
