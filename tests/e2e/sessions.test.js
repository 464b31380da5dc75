'use strict';
// Issue 5: server-side sessions in Redis, outages, token refresh, bearer JWTs
// and back-channel logout, against the real IdP, Redis and browser.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp, makeRsaKey } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { startRedis } = require('./lib/redis');
const { launchBrowser, newContext } = require('./lib/browser');
const { request, CookieJar } = require('./lib/http');
const { codeFlow, jwtPayload } = require('./lib/idp_client');
const { signRs256, unsigned, hs256WithPublicKey } = require('./lib/jwt');
const {
  skipReason, allocatePorts, baseConfig, merge, startAuthgate,
} = require('./lib/authgate');
const {
  stopAll, cookieHeader, sessionCookies, browserLogin, redirectsToIdp, gate,
} = require('./lib/common');
const { waitFor, waitUntilTime } = require('./lib/wait');

const { it, before, after } = gate(skipReason());

/** A page navigation with the context's cookies, answered without following redirects. */
async function navigate(context, url, extra = {}) {
  return request(url, { headers: { Accept: 'text/html', Cookie: await cookieHeader(context, url), ...extra } });
}

describe('Redis session store (issue 5)', () => {
  let nginx;
  let redis;
  let idp;
  let ag;
  let browser;
  let ctx;

  before(async () => {
    nginx = await startNginx();
    redis = await startRedis();
    const ports = await allocatePorts();
    const base = `http://127.0.0.1:${ports.listen}`;
    idp = await startIdp({
      redirectUris: [`${base}/oauth2/callback`],
      postLogoutRedirectUris: [`${base}/`],
      backchannelLogoutUri: `${base}/oauth2/backchannel_logout`,
    });
    const config = merge(baseConfig({ ports, idp, upstreamUrl: nginx.url }), {
      session: { store: 'redis', redis: { url: redis.url } },
    });
    ag = await startAuthgate({ ports, config });
    browser = await launchBrowser();
    ctx = await newContext(browser);
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => redis?.stop(), () => nginx?.stop());
  });

  it('logs in and keeps only a small opaque ticket in the cookie', async () => {
    const page = await ctx.newPage();
    const resp = await browserLogin(page, `${ag.url}/redis/page`, 'alice', idp);
    assert.equal(resp.status(), 200);
    assert.deepEqual(parseEcho(await resp.text()).get('x-forwarded-email'), ['alice@example.com']);
    const cookies = await sessionCookies(ctx);
    assert.deepEqual(cookies.map((c) => c.name), ['_oauth2_proxy'], 'one cookie, no chunks');
    assert.ok(cookies[0].value.length < 512, `ticket is ${cookies[0].value.length} bytes`);
    assert.doesNotMatch(Buffer.from(cookies[0].value, 'base64url').toString('latin1'), /alice/);
    assert.ok((await redis.keys()).length >= 1, 'the session lives in Redis');
    await page.close();
  });

  it('logs the user out when the session key is deleted from Redis', async () => {
    assert.equal((await navigate(ctx, `${ag.url}/redis/page`)).status, 200);
    const keys = await redis.keys();
    assert.ok(keys.length >= 1);
    await redis.cli('DEL', ...keys);
    const res = await navigate(ctx, `${ag.url}/redis/page`);
    assert.ok(redirectsToIdp(res, idp), `expected a redirect to the IdP, got ${res.status}`);
    // log in again for the next tests (the IdP session is still there)
    const page = await ctx.newPage();
    const again = await browserLogin(page, `${ag.url}/redis/page`, 'alice', idp);
    assert.equal(again.status(), 200);
    await page.close();
  });

  it('fails closed with 503 while Redis is down, stays up, and recovers when Redis returns', async () => {
    assert.equal((await navigate(ctx, `${ag.url}/redis/page`)).status, 200);
    await redis.stop({ save: true }); // an outage, not a data loss: the sessions come back with Redis
    await waitFor(async () => (await navigate(ctx, `${ag.url}/redis/page`)).status === 503,
      { timeoutMs: 10000, what: 'a session request to answer 503 while Redis is down' });
    await waitFor(async () => (await request(`${ag.url}/ready`)).status === 503,
      { timeoutMs: 10000, what: '/ready to answer 503 while Redis is down' });
    const ping = await request(`${ag.url}/ping`);
    assert.equal(ping.status, 200);
    assert.ok(ag.proc.isAlive(), 'authgate is still running');
    const down = await navigate(ctx, `${ag.url}/redis/page`);
    assert.equal(down.status, 503);
    assert.doesNotMatch(down.body, /^upstream: echo/);

    await redis.start();
    await waitFor(async () => (await navigate(ctx, `${ag.url}/redis/page`)).status === 200,
      { timeoutMs: 10000, what: 'the same session to work again after Redis returned' });
    await waitFor(async () => (await request(`${ag.url}/ready`)).status === 200,
      { timeoutMs: 10000, what: '/ready to answer 200 after Redis returned' });
  });

  it('ends only the logged-out IdP session\'s sessions when the logout token names a sid', async () => {
    assert.equal((await navigate(ctx, `${ag.url}/redis/page`)).status, 200);
    // A second browser: a second IdP session (own sid) for the same alice.
    const other = await newContext(browser);
    try {
      const page = await other.newPage();
      const resp = await browserLogin(page, `${ag.url}/redis/page`, 'alice', idp);
      assert.equal(resp.status(), 200);
      assert.equal((await navigate(other, `${ag.url}/redis/page`)).status, 200);
      const sent = idp.stats.backchannel.length;
      await page.goto(`${idp.issuer}/session/end`);
      await Promise.all([page.waitForNavigation(), page.click('#logout-yes')]);
      await waitFor(() => idp.stats.backchannel.length > sent, { timeoutMs: 10000, what: 'the IdP to send the logout token' });
      const tokens = idp.stats.backchannel.slice(sent);
      assert.deepEqual(tokens.map((b) => b.ok), [true], JSON.stringify(tokens));
      assert.ok(tokens[0].sid, 'the logout token names the IdP session (backchannel_logout_session_required)');
      await waitFor(async () => redirectsToIdp(await navigate(other, `${ag.url}/redis/page`), idp),
        { timeoutMs: 5000, what: 'the logged-out browser\'s session to end' });
      // authgate answered the logout token before the IdP's logout finished,
      // so the first browser's session has been decided on already.
      const kept = await navigate(ctx, `${ag.url}/redis/page`);
      assert.equal(kept.status, 200, 'the other IdP session\'s browser stays signed in');
      assert.deepEqual(parseEcho(kept.body).get('x-forwarded-email'), ['alice@example.com']);
    } finally {
      await other.close();
    }
  });

  it('ends the session on a back-channel logout from the IdP', async (t) => {
    assert.equal((await navigate(ctx, `${ag.url}/redis/page`)).status, 200);
    const probe = await request(`${ag.url}/oauth2/backchannel_logout`, {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'logout_token=x',
    });
    if (probe.status === 404 || redirectsToIdp(probe, idp)) {
      t.skip('authgate has no /oauth2/backchannel_logout endpoint (not in CONTRACT.md)');
      return;
    }
    const sent = idp.stats.backchannel.length;
    const page = await ctx.newPage();
    await page.goto(`${idp.issuer}/session/end`);
    await Promise.all([page.waitForNavigation(), page.click('#logout-yes')]);
    await waitFor(() => idp.stats.backchannel.length > sent, { timeoutMs: 10000, what: 'the IdP to send the logout token' });
    const tokens = idp.stats.backchannel.slice(sent);
    assert.deepEqual(tokens.map((b) => b.ok), [true], JSON.stringify(tokens));
    await waitFor(async () => redirectsToIdp(await navigate(ctx, `${ag.url}/redis/page`), idp),
      { timeoutMs: 5000, what: 'the session to end after back-channel logout' });
    await page.close();
  });
});

describe('token refresh (issue 5)', () => {
  const TOKEN_TTL_S = 4;
  let nginx;
  let redis;
  let idp;
  let ag;
  let browser;
  let ctx;

  before(async () => {
    nginx = await startNginx();
    redis = await startRedis();
    const ports = await allocatePorts();
    idp = await startIdp({
      redirectUris: [`http://127.0.0.1:${ports.listen}/oauth2/callback`],
      accessTokenTtl: TOKEN_TTL_S,
      idTokenTtl: TOKEN_TTL_S,
    });
    const config = merge(baseConfig({ ports, idp, upstreamUrl: nginx.url }), {
      cookie: { refresh: '2s' },
      session: { store: 'redis', redis: { url: redis.url } },
    });
    ag = await startAuthgate({ ports, config });
    browser = await launchBrowser();
    ctx = await newContext(browser);
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => redis?.stop(), () => nginx?.stop());
  });

  it('keeps a session past its tokens\' life with exactly one refresh for 10 parallel requests', async () => {
    const page = await ctx.newPage();
    const loginAt = Date.now();
    const resp = await browserLogin(page, `${ag.url}/refresh/page`, 'alice', idp);
    assert.equal(resp.status(), 200);
    assert.equal(idp.stats.countGrant('refresh_token'), 0);
    await waitUntilTime(loginAt + TOKEN_TTL_S * 1000 + 1000, 'the ID and access tokens to expire');
    const cookie = await cookieHeader(ctx, ag.url);
    const url = `${ag.url}/refresh/page`;
    const answers = await Promise.all(Array.from({ length: 10 }, () => request(url, { headers: { Accept: 'text/html', Cookie: cookie } })));
    assert.deepEqual(answers.map((r) => r.status), Array(10).fill(200));
    for (const r of answers) assert.deepEqual(parseEcho(r.body).get('x-forwarded-email'), ['alice@example.com']);
    await waitFor(() => idp.stats.countGrant('refresh_token') >= 1, { timeoutMs: 5000, what: 'a refresh_token grant at the IdP' });
    const refreshes = idp.stats.tokenRequests.filter((r) => r.grantType === 'refresh_token');
    assert.equal(refreshes.length, 1, `refresh_token grants: ${JSON.stringify(refreshes)}`);
    assert.equal(refreshes[0].status, 200);
    await page.close();
  });

  it('ends the session once its refresh token is revoked at the IdP', async () => {
    assert.equal((await navigate(ctx, `${ag.url}/refresh/page`)).status, 200);
    await idp.revokeAllGrants();
    await waitFor(async () => redirectsToIdp(await navigate(ctx, `${ag.url}/refresh/page`), idp),
      { timeoutMs: (TOKEN_TTL_S + 8) * 1000, intervalMs: 250, what: 'the session to end after its refresh token was revoked' });
    assert.ok(idp.stats.tokenRequests.some((r) => r.grantType === 'refresh_token' && r.status === 400),
      'authgate tried the revoked refresh token');
  });
});

describe('bearer JWTs (issue 5)', () => {
  let nginx;
  let idp;
  let ag;
  let directCb;

  before(async () => {
    nginx = await startNginx();
    const ports = await allocatePorts();
    directCb = `http://127.0.0.1:${ports.listen}/direct-cb`;
    idp = await startIdp({ redirectUris: [`http://127.0.0.1:${ports.listen}/oauth2/callback`, directCb] });
    const config = merge(baseConfig({ ports, idp, upstreamUrl: nginx.url }), {
      authorization: { api_routes: ['^/api/'] },
    });
    ag = await startAuthgate({ ports, config });
  });

  after(async () => {
    await stopAll(() => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  const api = (token, path = '/api/things') => request(`${ag.url}${path}`, {
    headers: { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  });

  function aliceClaims(overrides = {}) {
    const now = Math.floor(Date.now() / 1000);
    return {
      iss: idp.issuer, aud: 'authgate', sub: 'alice', iat: now, exp: now + 300,
      email: 'alice@example.com', email_verified: true, preferred_username: 'alice', groups: ['admins', 'devs'],
      ...overrides,
    };
  }

  it('accepts alice\'s ID token from the IdP as a bearer on an API path', async () => {
    const tokens = await codeFlow(new CookieJar(), idp, { username: 'alice', password: 'alice', redirectUri: directCb });
    assert.equal(jwtPayload(tokens.id_token).aud, 'authgate');
    const res = await api(tokens.id_token);
    assert.equal(res.status, 200, res.body.slice(0, 300));
    assert.deepEqual(parseEcho(res.body).get('x-forwarded-email'), ['alice@example.com']);
    assert.deepEqual(parseEcho(res.body).get('x-forwarded-groups'), ['admins,devs']);
  });

  it('answers 401 on an API path without credentials, even for a browser', async () => {
    const res = await request(`${ag.url}/api/things`, { headers: { Accept: 'text/html' } });
    assert.equal(res.status, 401);
  });

  it('accepts a token signed with the IdP\'s key (control for the forgeries below)', async () => {
    const res = await api(signRs256(aliceClaims(), idp.key.privateKey, idp.key.kid));
    assert.equal(res.status, 200);
  });

  it('rejects alg none, HS256 keyed with the public key, wrong aud, wrong iss, expired, not yet valid, garbage', async () => {
    const { key } = idp;
    const now = Math.floor(Date.now() / 1000);
    const cases = {
      'alg none': unsigned(aliceClaims(), key.kid),
      'HS256 with the public key': hs256WithPublicKey(aliceClaims(), key.publicKey, key.kid),
      'wrong aud': signRs256(aliceClaims({ aud: 'someone-else' }), key.privateKey, key.kid),
      'wrong iss': signRs256(aliceClaims({ iss: 'http://127.0.0.1:1/evil' }), key.privateKey, key.kid),
      expired: signRs256(aliceClaims({ iat: now - 7200, exp: now - 3600 }), key.privateKey, key.kid),
      'not yet valid': signRs256(aliceClaims({ nbf: now + 3600 }), key.privateKey, key.kid),
      'signed by an unknown key': signRs256(aliceClaims(), makeRsaKey('e2e-unpublished').privateKey, 'e2e-unpublished'),
      'tampered payload': (() => {
        const [h, , s] = signRs256(aliceClaims({ email: 'bob@example.com' }), key.privateKey, key.kid).split('.');
        return `${h}.${Buffer.from(JSON.stringify(aliceClaims())).toString('base64url')}.${s}`;
      })(),
      garbage: 'not.a.jwt',
    };
    const got = {};
    for (const [name, token] of Object.entries(cases)) got[name] = (await api(token)).status;
    assert.deepEqual(got, Object.fromEntries(Object.keys(cases).map((k) => [k, 401])));
  });

  it('picks up a new signing key from the JWKS when a token names an unknown kid', async () => {
    const rotated = makeRsaKey('e2e-key-2');
    idp.addPublicJwk(rotated.publicJwk);
    // authgate rate-limits JWKS refetches (10 s apart, so forged kids cannot
    // flood the IdP) and fetched the set moments ago: allow two intervals.
    await waitFor(async () => (await api(signRs256(aliceClaims(), rotated.privateKey, rotated.kid))).status === 200,
      { timeoutMs: 25000, intervalMs: 500, what: 'a token signed with the rotated key to be accepted' });
  });

  it('answers 403 to bob\'s valid bearer token (not in allowed_groups)', async () => {
    const tokens = await codeFlow(new CookieJar(), idp, { username: 'bob', password: 'bob', redirectUri: directCb });
    const res = await api(tokens.id_token);
    assert.equal(res.status, 403);
  });
});
