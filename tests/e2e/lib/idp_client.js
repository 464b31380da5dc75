'use strict';
// Drives the IdP's login without a browser: follows its redirects with a
// cookie jar, posts the login form, and stops at the first redirect that
// leaves the IdP (the relying party's callback URL).
const crypto = require('node:crypto');
const { jarRequest } = require('./http');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * Follows `startUrl` (an IdP authorization URL) through login.
 * @returns {Promise<string>} the absolute URL the IdP redirected to outside itself.
 */
async function loginAtIdp(jar, idp, startUrl, username, password) {
  let url = startUrl;
  let posted = false;
  for (let hop = 0; hop < 20; hop += 1) {
    const res = await jarRequest(jar, url, { headers: { Accept: 'text/html' } });
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.location, url).toString();
      if (!next.startsWith(`${idp.issuer}/`)) return next;
      url = next;
      continue;
    }
    const m = /action="(\/interaction\/[^"]+\/login)"/.exec(res.body);
    if (res.status === 200 && m && !posted) {
      posted = true;
      const body = new URLSearchParams({ username, password }).toString();
      const post = await jarRequest(jar, new URL(m[1], url).toString(), {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'text/html' },
        body,
      });
      if (post.status < 300 || post.status >= 400) throw new Error(`IdP login failed: ${post.status} ${post.body.slice(0, 300)}`);
      url = new URL(post.headers.location, url).toString();
      if (!url.startsWith(`${idp.issuer}/`)) return url;
      continue;
    }
    throw new Error(`unexpected IdP answer ${res.status} at ${url}: ${res.body.slice(0, 300)}`);
  }
  throw new Error('too many redirects at the IdP');
}

/**
 * A complete authorization-code flow as the `authgate` client (no authgate
 * involved): returns the token response ({id_token, access_token, refresh_token, ...}).
 */
async function codeFlow(jar, idp, { username, password, redirectUri, scope = 'openid email profile groups' }) {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const state = b64url(crypto.randomBytes(16));
  const nonce = b64url(crypto.randomBytes(16));
  const auth = new URL(`${idp.issuer}/auth`);
  auth.search = new URLSearchParams({
    client_id: idp.clientId, response_type: 'code', scope, redirect_uri: redirectUri,
    state, nonce, code_challenge: challenge, code_challenge_method: 'S256',
  }).toString();
  const back = new URL(await loginAtIdp(jar, idp, auth.toString(), username, password));
  if (back.searchParams.get('state') !== state) throw new Error(`state mismatch in ${back}`);
  const code = back.searchParams.get('code');
  if (!code) throw new Error(`no code in ${back}`);
  return redeem(idp, {
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
  });
}

/** POST /token with client_secret_basic. */
async function redeem(idp, params) {
  const res = await fetch(`${idp.issuer}/token`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      Authorization: `Basic ${Buffer.from(`${idp.clientId}:${idp.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams(params).toString(),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`token endpoint ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/** Decodes a JWT's payload without verifying it (tests inspect their own tokens). */
function jwtPayload(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

module.exports = { loginAtIdp, codeFlow, redeem, jwtPayload };
