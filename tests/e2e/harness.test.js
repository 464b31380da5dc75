'use strict';
// Smoke tests of the harness itself (no authgate needed): the real IdP, nginx
// echo upstream, Redis and Chromium all work as the other suites assume.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { launchBrowser, newContext, submitLogin } = require('./lib/browser');
const { request, CookieJar } = require('./lib/http');
const { codeFlow, redeem, jwtPayload } = require('./lib/idp_client');
const { freePort } = require('./lib/ports');
const { toYaml } = require('./lib/authgate');

describe('harness: oidc-provider', () => {
  let idp;
  let catcherPort;
  before(async () => {
    catcherPort = await freePort();
    idp = await startIdp({ redirectUris: [`http://127.0.0.1:${catcherPort}/cb`] });
  });
  after(async () => { await idp?.stop(); });

  it('serves discovery with the endpoints and claims authgate relies on', async () => {
    const res = await fetch(`${idp.issuer}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const d = await res.json();
    assert.equal(d.issuer, idp.issuer);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint', 'revocation_endpoint']) {
      assert.ok(d[k]?.startsWith(idp.issuer), `${k} missing: ${d[k]}`);
    }
    assert.ok(d.claims_supported.includes('groups'));
    assert.ok(d.scopes_supported.includes('groups'));
    assert.equal(d.backchannel_logout_supported, true);
    const jwks = await (await fetch(d.jwks_uri)).json();
    assert.equal(jwks.keys[0].kid, idp.key.kid);
    assert.equal(jwks.keys[0].d, undefined, 'private key material must not be published');
    const { makeRsaKey } = require('./lib/idp');
    idp.addPublicJwk(makeRsaKey('harness-extra').publicJwk);
    const rotated = await (await fetch(d.jwks_uri)).json();
    assert.deepEqual(rotated.keys.map((k) => k.kid), [idp.key.kid, 'harness-extra']);
  });

  it('a direct code flow yields an ID token with the user claims, and a working refresh token', async () => {
    const tokens = await codeFlow(new CookieJar(), idp, {
      username: 'alice', password: 'alice', redirectUri: `http://127.0.0.1:${catcherPort}/cb`,
    });
    const claims = jwtPayload(tokens.id_token);
    assert.equal(claims.iss, idp.issuer);
    assert.equal(claims.aud, 'authgate');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.email_verified, true);
    assert.equal(claims.preferred_username, 'alice');
    assert.deepEqual(claims.groups, ['admins', 'devs']);
    assert.ok(tokens.refresh_token, 'refresh_token issued');
    const before = idp.stats.countGrant('refresh_token');
    const refreshed = await redeem(idp, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
    assert.ok(refreshed.id_token);
    assert.equal(idp.stats.countGrant('refresh_token'), before + 1);
    await idp.revokeAllGrants();
    await assert.rejects(redeem(idp, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }), /invalid_grant/);
  });

  it('puts email_verified false in carol\'s ID token', async () => {
    const tokens = await codeFlow(new CookieJar(), idp, {
      username: 'carol', password: 'carol', redirectUri: `http://127.0.0.1:${catcherPort}/cb`,
    });
    assert.equal(jwtPayload(tokens.id_token).email_verified, false);
  });

  it('rejects a wrong password', async () => {
    await assert.rejects(codeFlow(new CookieJar(), idp, {
      username: 'alice', password: 'wrong', redirectUri: `http://127.0.0.1:${catcherPort}/cb`,
    }), /Invalid username or password/);
  });
});

describe('harness: nginx echo upstream', () => {
  let nginx;
  before(async () => { nginx = await startNginx(); });
  after(async () => { await nginx?.stop(); });

  it('echoes the request line and every header, underscores included', async () => {
    const res = await request(`${nginx.url}/some/page?x=1`, {
      headers: [['X-Test', 'one'], ['X_Under_Score', 'two'], ['Cookie', 'a=b']],
    });
    assert.equal(res.status, 200);
    const echo = parseEcho(res.body);
    assert.equal(echo.requestLine, 'GET /some/page?x=1 HTTP/1.1');
    assert.deepEqual(echo.get('x-test'), ['one']);
    assert.deepEqual(echo.get('X_Under_Score'), ['two']);
    assert.deepEqual(echo.get('cookie'), ['a=b']);
  });
});

describe('harness: redis', () => {
  let redis;
  before(async () => { redis = await startRedis(); });
  after(async () => { await redis?.stop(); });

  it('starts, stops with a dump and restarts with its data', async () => {
    assert.equal(await redis.cli('SET', 'k', 'v'), 'OK');
    await redis.stop({ save: true });
    await assert.rejects(redis.cli('PING'));
    await redis.start();
    assert.equal(await redis.cli('GET', 'k'), 'v');
    assert.deepEqual(await redis.keys(), ['k']);
  });
});

describe('harness: chromium', () => {
  let idp;
  let browser;
  let catcher;
  const caught = [];
  before(async () => {
    const port = await freePort();
    catcher = http.createServer((req, res) => {
      caught.push(new URL(req.url, `http://127.0.0.1:${port}`));
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body><h1 id="caught">caught</h1></body></html>');
    });
    await new Promise((r) => catcher.listen(port, '127.0.0.1', r));
    idp = await startIdp({ redirectUris: [`http://127.0.0.1:${port}/cb`] });
    idp.catcherPort = port;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await idp?.stop();
    catcher?.closeAllConnections();
    await new Promise((r) => (catcher ? catcher.close(() => r()) : r()));
  });

  it('logs alice in at the IdP form and lands on the redirect URI with a code', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const redirectUri = `http://127.0.0.1:${idp.catcherPort}/cb`;
    const auth = new URL(`${idp.issuer}/auth`);
    const verifier = 'v'.repeat(43);
    const challenge = require('node:crypto').createHash('sha256').update(verifier).digest('base64url');
    auth.search = new URLSearchParams({
      client_id: 'authgate', response_type: 'code', scope: 'openid email groups', redirect_uri: redirectUri,
      state: 's1', nonce: 'n1', code_challenge: challenge, code_challenge_method: 'S256',
    }).toString();
    await page.goto(auth.toString());
    assert.match(page.url(), /\/interaction\//);
    const resp = await submitLogin(page, 'alice', 'alice');
    assert.equal(resp.status(), 200);
    assert.ok(page.url().startsWith(redirectUri), page.url());
    const got = caught.at(-1);
    assert.equal(got.searchParams.get('state'), 's1');
    const tokens = await redeem(idp, {
      grant_type: 'authorization_code', code: got.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier,
    });
    assert.equal(jwtPayload(tokens.id_token).email, 'alice@example.com');
    await context.close();
  });
});

describe('harness: config YAML writer', () => {
  it('writes nested maps, lists of maps and quoted scalars', () => {
    const y = toYaml({ a: { b: 'x', c: [1, 'two'] }, u: [{ path: '/', url: 'http://h' }], e: [] });
    assert.equal(y, '\na:\n  b: "x"\n  c:\n    - 1\n    - "two"\nu:\n  - path: "/"\n    url: "http://h"\ne: []');
  });
});
