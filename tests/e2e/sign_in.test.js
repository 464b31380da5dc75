'use strict';
// Issue 3: authgate as a sidecar/edge proxy in front of an app with no auth
// of its own (nginx echo), with a real browser and a real IdP.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { launchBrowser, newContext, submitLogin } = require('./lib/browser');
const { request, CookieJar } = require('./lib/http');
const { codeFlow, jwtPayload } = require('./lib/idp_client');
const {
  skipReason, allocatePorts, baseConfig, startAuthgate,
} = require('./lib/authgate');
const {
  stopAll, cookieHeader, sessionCookies, browserLogin, redirectsToIdp, setCookieNames, parseMetrics, gate,
} = require('./lib/common');
const { waitFor } = require('./lib/wait');

const SESSION_COOKIE_RE = /(^|;\s*)_oauth2_proxy(_\d+)?=/;

const { it, before, after } = gate(skipReason());

describe('sign-in through the proxy listener (issue 3)', () => {
  let nginx;
  let idp;
  let ag;
  let browser;
  let alice; // a browser context holding alice's session
  let directCb;

  before(async () => {
    nginx = await startNginx();
    const ports = await allocatePorts();
    const base = `http://127.0.0.1:${ports.listen}`;
    directCb = `${base}/direct-cb`;
    idp = await startIdp({
      redirectUris: [`${base}/oauth2/callback`, directCb],
      postLogoutRedirectUris: [`${base}/`, `${base}/oauth2/sign_out`],
    });
    ag = await startAuthgate({ ports, config: baseConfig({ ports, idp, upstreamUrl: nginx.url }) });
    browser = await launchBrowser();
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  it('logs alice in through the IdP and shows the upstream her identity headers', async () => {
    alice = await newContext(browser);
    const page = await alice.newPage();
    await page.goto(`${ag.url}/some/page?q=1`);
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), `expected the IdP login page, got ${page.url()}`);
    const resp = await submitLogin(page, 'alice', 'alice');
    assert.equal(page.url(), `${ag.url}/some/page?q=1`);
    assert.equal(resp.status(), 200);
    const echo = parseEcho(await resp.text());
    assert.equal(echo.requestLine, 'GET /some/page?q=1 HTTP/1.1');
    assert.deepEqual(echo.get('x-auth-request-user'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-forwarded-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-forwarded-user'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-forwarded-groups'), ['admins,devs']);
    assert.deepEqual(echo.get('x-auth-request-groups'), ['admins,devs']);
    assert.deepEqual(echo.get('x-forwarded-preferred-username'), ['alice']);
    const session = await sessionCookies(alice);
    assert.ok(session.length >= 1, 'the browser holds a session cookie');
    assert.ok(session.every((c) => c.httpOnly), 'session cookies are HttpOnly');
    const csrf = (await alice.cookies()).filter((c) => c.name.startsWith('_oauth2_proxy_csrf') && c.value !== '');
    assert.deepEqual(csrf.map((c) => c.name), [], 'the callback clears the CSRF cookie');
  });

  it('never shows the session cookie to the upstream, but keeps the app\'s own cookies', async () => {
    await alice.addCookies([{ name: 'app_pref', value: 'dark', url: ag.url }]);
    const page = await alice.newPage();
    const resp = await page.goto(`${ag.url}/another`);
    assert.equal(resp.status(), 200);
    const echo = parseEcho(await resp.text());
    const cookies = echo.get('cookie').join('; ');
    assert.doesNotMatch(cookies, SESSION_COOKIE_RE);
    assert.doesNotMatch(cookies, /_oauth2_proxy/);
    assert.match(cookies, /(^|;\s*)app_pref=dark/);
    await page.close();
  });

  it('drops spoofed identity headers, whatever their case or separator', async () => {
    const url = `${ag.url}/spoof`;
    const res = await request(url, {
      headers: [
        ['Accept', 'text/html'],
        ['Cookie', await cookieHeader(alice, url)],
        ['X-Auth-Request-Email', 'evil@evil.com'],
        ['X_Forwarded_Email', 'evil@evil.com'],
        ['x-forwarded-user', 'evil@evil.com'],
        ['X-FORWARDED-GROUPS', 'evil'],
        ['X_Auth_Request_Preferred_Username', 'evil'],
      ],
    });
    assert.equal(res.status, 200);
    const echo = parseEcho(res.body);
    assert.doesNotMatch(res.body, /evil/);
    assert.deepEqual(echo.get('x-auth-request-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('x-forwarded-email'), ['alice@example.com']);
    assert.deepEqual(echo.get('X_Forwarded_Email'), []);
    assert.deepEqual(echo.get('x-forwarded-groups'), ['admins,devs']);
  });

  it('answers /oauth2/auth 202 with identity headers for alice, 401 anonymous, 403 for bob', async () => {
    const url = `${ag.url}/oauth2/auth`;
    const ok = await request(url, { headers: { Cookie: await cookieHeader(alice, url) } });
    assert.equal(ok.status, 202);
    assert.equal(ok.headers['x-auth-request-email'], 'alice@example.com');
    assert.equal(ok.headers['x-auth-request-groups'], 'admins,devs');
    const anon = await request(url, { headers: { Accept: 'text/html' } });
    assert.equal(anon.status, 401);
    // bob is authenticated (his own ID token as bearer) but not in allowed_groups
    const bob = await codeFlow(new CookieJar(), idp, { username: 'bob', password: 'bob', redirectUri: directCb });
    const forbidden = await request(url, { headers: { Authorization: `Bearer ${bob.id_token}` } });
    assert.equal(forbidden.status, 403);
  });

  it('answers /oauth2/userinfo with alice\'s identity as JSON', async () => {
    const url = `${ag.url}/oauth2/userinfo`;
    const res = await request(url, { headers: { Cookie: await cookieHeader(alice, url), Accept: 'application/json' } });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /application\/json/);
    const info = JSON.parse(res.body);
    assert.equal(info.email, 'alice@example.com');
    assert.equal(info.user, 'alice@example.com');
    assert.equal(info.preferred_username, 'alice');
    assert.deepEqual(info.groups, ['admins', 'devs']);
    const anon = await request(url, { headers: { Accept: 'application/json' } });
    assert.equal(anon.status, 401);
  });

  it('redirects an anonymous page navigation to the IdP with a CSRF cookie', async () => {
    const res = await request(`${ag.url}/some/page`, { headers: { Accept: 'text/html,application/xhtml+xml' } });
    assert.ok(redirectsToIdp(res, idp), `expected a redirect to the IdP, got ${res.status} ${res.headers.location}`);
    const loc = new URL(res.headers.location);
    assert.equal(loc.searchParams.get('client_id'), 'authgate');
    assert.equal(loc.searchParams.get('redirect_uri'), `${ag.url}/oauth2/callback`);
    assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(loc.searchParams.get('state'));
    assert.ok(loc.searchParams.get('nonce'));
    assert.ok(setCookieNames(res.setCookies).some((n) => n.startsWith('_oauth2_proxy_csrf')), res.setCookies.join(' | '));
  });

  it('answers 401, not a redirect, to JSON, XHR and fetch requests without a session', async () => {
    const url = `${ag.url}/some/page`;
    const json = await request(url, { headers: { Accept: 'application/json' } });
    assert.equal(json.status, 401);
    const xhr = await request(url, { headers: { Accept: 'text/html', 'X-Requested-With': 'XMLHttpRequest' } });
    assert.equal(xhr.status, 401);
    const fetchMode = await request(url, { headers: { Accept: 'text/html', 'Sec-Fetch-Mode': 'cors' } });
    assert.equal(fetchMode.status, 401);
    const bare = await request(url);
    assert.ok(redirectsToIdp(bare, idp), `a request with none of those headers is a browser: got ${bare.status}`);
  });

  it('shows bob a 403 after he logs in, and never reaches the upstream', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const resp = await browserLogin(page, `${ag.url}/some/page`, 'bob', idp);
    assert.equal(resp.status(), 403);
    assert.doesNotMatch(await resp.text(), /^upstream: echo/);
    await context.close();
  });

  it('refuses carol (unverified email) with an error page and no session', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const resp = await browserLogin(page, `${ag.url}/some/page`, 'carol', idp);
    assert.ok(page.url().startsWith(`${ag.url}/oauth2/callback?`), `carol ends on the callback's error page, not ${page.url()}`);
    assert.ok(resp.status() >= 400 && resp.status() < 600, `expected an error page, got ${resp.status()}`);
    assert.doesNotMatch(await resp.text(), /^upstream: echo/);
    assert.deepEqual((await sessionCookies(context)).map((c) => c.name), []);
    await context.close();
  });

  it('completes two logins started at once in one browser', async () => {
    const context = await newContext(browser);
    const [p1, p2] = [await context.newPage(), await context.newPage()];
    await p1.goto(`${ag.url}/first`);
    await p2.goto(`${ag.url}/second`);
    assert.ok(p1.url().startsWith(`${idp.issuer}/interaction/`), p1.url());
    assert.ok(p2.url().startsWith(`${idp.issuer}/interaction/`), p2.url());
    const r1 = await submitLogin(p1, 'alice', 'alice');
    const r2 = await submitLogin(p2, 'alice', 'alice');
    assert.equal(p1.url(), `${ag.url}/first`);
    assert.equal(p2.url(), `${ag.url}/second`);
    assert.equal(r1.status(), 200);
    assert.equal(r2.status(), 200);
    assert.equal(parseEcho(await r1.text()).requestLine, 'GET /first HTTP/1.1');
    assert.deepEqual(parseEcho(await r2.text()).get('x-forwarded-email'), ['alice@example.com']);
    await context.close();
  });

  it('ends the session on /oauth2/sign_out: the next navigation goes to the IdP again', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const first = await browserLogin(page, `${ag.url}/before-sign-out`, 'alice', idp);
    assert.equal(first.status(), 200);
    assert.ok((await sessionCookies(context)).length > 0);
    const out = await context.request.get(`${ag.url}/oauth2/sign_out`, { maxRedirects: 0 });
    assert.ok([302, 303].includes(out.status()), `sign_out answered ${out.status()}`);
    assert.deepEqual((await sessionCookies(context)).map((c) => c.name), [], 'sign_out clears the session cookie');
    const idpHits = [];
    page.on('request', (r) => { if (r.url().startsWith(`${idp.issuer}/auth`)) idpHits.push(r.url()); });
    await page.goto(`${ag.url}/after-sign-out`);
    assert.ok(idpHits.length >= 1, 'the navigation after sign-out went through the IdP');
    await context.close();
  });

  it('signs out at the IdP too: end_session with id_token_hint, back to rd, and the IdP asks for a password again', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    assert.equal((await browserLogin(page, `${ag.url}/before-idp-logout`, 'alice', idp)).status(), 200);
    const ended = idp.stats.endSessions;
    const landed = await page.goto(`${ag.url}/oauth2/sign_out?rd=%2F`);
    // The browser followed authgate's redirect to the IdP's logout confirmation.
    const signOut = landed.request().redirectedFrom();
    assert.ok(signOut && signOut.url() === `${ag.url}/oauth2/sign_out?rd=%2F`, `sign_out was not redirected: ${page.url()}`);
    const loc = new URL((await signOut.response()).headers().location);
    assert.equal(`${loc.origin}${loc.pathname}`, `${idp.issuer}/session/end`);
    assert.equal(loc.searchParams.get('post_logout_redirect_uri'), `${ag.url}/`);
    assert.equal(loc.searchParams.get('client_id'), 'authgate');
    const hint = loc.searchParams.get('id_token_hint');
    assert.ok(hint, 'id_token_hint is sent');
    assert.equal(jwtPayload(hint).aud, 'authgate');
    assert.equal(jwtPayload(hint).email, 'alice@example.com');
    assert.deepEqual((await sessionCookies(context)).map((c) => c.name), [], 'sign_out clears the session cookie');
    const seen = [];
    page.on('request', (r) => seen.push(r.url()));
    await Promise.all([page.waitForURL(`${idp.issuer}/interaction/**`), page.click('#logout-yes')]);
    assert.equal(idp.stats.endSessions, ended + 1, 'the IdP ended its session');
    assert.ok(seen.includes(`${ag.url}/`), `the IdP sent the browser back to rd: ${seen.join(' ')}`);
    await page.waitForSelector('input[name=password]');
    await context.close();
  });

  it('answers /ping with 200 OK without a session', async () => {
    const res = await request(`${ag.url}/ping`, { headers: { Accept: 'application/json' } });
    assert.equal(res.status, 200);
    assert.equal(res.body.trim(), 'OK');
  });

  it('exports authgate_requests_total by listener and decision on /metrics', async () => {
    // traffic of each kind first: allowed (alice), unauthenticated, forbidden (bob's bearer)
    assert.equal((await request(`${ag.url}/m/allowed`, { headers: { Cookie: await cookieHeader(alice, ag.url) } })).status, 200);
    assert.equal((await request(`${ag.url}/m/anon`, { headers: { Accept: 'application/json' } })).status, 401);
    const bob = await codeFlow(new CookieJar(), idp, { username: 'bob', password: 'bob', redirectUri: directCb });
    assert.equal((await request(`${ag.url}/m/forbidden`, { headers: { Authorization: `Bearer ${bob.id_token}` } })).status, 403);
    let last = '';
    await waitFor(async () => {
      const res = await request(ag.metricsUrl);
      last = res.body;
      if (res.status !== 200) return false;
      const m = parseMetrics(res.body);
      const reqs = m.filter((s) => s.name === 'authgate_requests_total');
      const sum = (decision) => reqs.filter((s) => s.labels.decision === decision).reduce((a, s) => a + s.value, 0);
      return reqs.length > 0
        && reqs.every((s) => 'listener' in s.labels)
        && sum('allowed') > 0 && sum('unauthenticated') > 0 && sum('forbidden') > 0
        && m.some((s) => s.name === 'authgate_upstream_errors_total')
        && m.some((s) => s.name === 'authgate_dependency_up' && s.labels.dependency === 'idp' && s.value === 1);
    }, { timeoutMs: 5000, what: 'metrics with allowed/unauthenticated/forbidden requests, upstream errors and idp up' })
      .catch((err) => { throw new Error(`${err.message}\n${last.slice(0, 3000)}`); });
  });
});
