'use strict';
// Issue 9, faults 3 and 6, in a real browser: a login from a long URL lands
// on that URL (the flow cookie stays small); bob, refused, sees his email and
// a "sign in with another account" link that reaches the IdP's login form
// with prompt=login; reloading a spent callback starts a new login.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, parseEcho } = require('./lib/nginx');
const { launchBrowser, newContext, submitLogin } = require('./lib/browser');
const { skipReason, allocatePorts, baseConfig, startAuthgate } = require('./lib/authgate');
const { stopAll, sessionCookies, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason());

/** A dashboard-like path of about `len` bytes: encoded path, encoded query. */
function longPath(len) {
  const head = '/dash%20board/caf%C3%A9?panel=a%26b&v=';
  return head + 'x'.repeat(Math.max(0, len - head.length));
}

/** Records the IdP authorization requests and authgate callbacks a page makes. */
function watch(page, idp, ag) {
  const seen = { authorize: [], callbacks: [] };
  page.on('request', (req) => {
    const url = req.url();
    if (url.startsWith(`${idp.issuer}/auth`)) seen.authorize.push(new URL(url));
    if (url.startsWith(`${ag.url}/oauth2/callback`)) seen.callbacks.push(url);
  });
  return seen;
}

describe('login flows: long URLs, the wrong account, reloaded callbacks (issue 9)', () => {
  let nginx;
  let idp;
  let ag;
  let browser;

  before(async () => {
    nginx = await startNginx();
    const ports = await allocatePorts();
    const base = `http://127.0.0.1:${ports.listen}`;
    idp = await startIdp({ redirectUris: [`${base}/oauth2/callback`] });
    ag = await startAuthgate({ ports, config: baseConfig({ ports, idp, upstreamUrl: nginx.url }) });
    browser = await launchBrowser();
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => nginx?.stop());
  });

  for (const len of [2800, 8 * 1024]) {
    it(`lands a login from a ${len}-byte URL on that URL, query and encoded path intact`, async () => {
      const context = await newContext(browser);
      const page = await context.newPage();
      const path = longPath(len);
      await page.goto(`${ag.url}${path}`);
      assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), `expected the IdP login page, got ${page.url().slice(0, 200)}`);
      const flows = (await context.cookies()).filter((c) => c.name.startsWith('_oauth2_proxy_csrf'));
      assert.equal(flows.length, 1, 'the browser kept the flow cookie');
      assert.ok(flows[0].name.length + flows[0].value.length < 1000, `flow cookie of ${flows[0].value.length} bytes`);
      const resp = await submitLogin(page, 'alice', 'alice');
      assert.equal(page.url(), `${ag.url}${path}`);
      assert.equal(resp.status(), 200);
      assert.equal(parseEcho(await resp.text()).requestLine, `GET ${path} HTTP/1.1`);
      await context.close();
    });
  }

  it('shows bob his email and a link to another account that reaches the IdP login form with prompt=login', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const seen = watch(page, idp, ag);
    const path = '/private/report?range=7d&q=a%20b';
    await page.goto(`${ag.url}${path}`);
    const refused = await submitLogin(page, 'bob', 'bob');
    assert.equal(refused.status(), 403);
    assert.equal(await page.textContent('#signed-in-as'), 'bob@example.com');
    assert.deepEqual(await sessionCookies(context), [], 'no session for bob');

    // The IdP still holds bob's single sign-on session: without prompt=login
    // the link would bounce straight back to this 403.
    const before = seen.authorize.length;
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#another-account')]);
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), `expected the IdP login form, got ${page.url()}`);
    assert.ok(await page.isVisible('input[name=username]'));
    const asked = seen.authorize.slice(before);
    assert.equal(asked.length, 1);
    assert.equal(asked[0].searchParams.get('prompt'), 'login');
    const resp = await submitLogin(page, 'alice', 'alice');
    assert.equal(page.url(), `${ag.url}${path}`);
    assert.equal(resp.status(), 200);
    await context.close();
  });

  it('starts a new login when a spent callback is reloaded, for bob and for alice', async () => {
    // bob: reloading the 403 at the callback asks the IdP again (a new state).
    const bobCtx = await newContext(browser);
    const bobPage = await bobCtx.newPage();
    const bobSeen = watch(bobPage, idp, ag);
    await bobPage.goto(`${ag.url}/bob-was-here`);
    await submitLogin(bobPage, 'bob', 'bob');
    const spent = bobPage.url();
    assert.ok(spent.startsWith(`${ag.url}/oauth2/callback?`), spent);
    const asked = bobSeen.authorize.length;
    const again = await bobPage.reload();
    assert.equal(bobSeen.authorize.length, asked + 1, 'the reload went back to the IdP');
    assert.notEqual(new URL(bobPage.url()).searchParams.get('state'), new URL(spent).searchParams.get('state'));
    assert.equal(again.status(), 403, 'bob is refused again, on a fresh flow');
    assert.equal(await bobPage.textContent('#signed-in-as'), 'bob@example.com');
    assert.deepEqual(await sessionCookies(bobCtx), []);
    await bobCtx.close();

    // alice: after landing, going back to the spent callback URL signs her
    // in again through the IdP and lands on the same page.
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    const seen = watch(page, idp, ag);
    await page.goto(`${ag.url}/alice/page?n=1`);
    await submitLogin(page, 'alice', 'alice');
    assert.equal(page.url(), `${ag.url}/alice/page?n=1`);
    const callback = seen.callbacks[seen.callbacks.length - 1];
    const n = seen.authorize.length;
    const resp = await page.goto(callback);
    assert.equal(seen.authorize.length, n + 1, 'a fresh login');
    assert.equal(page.url(), `${ag.url}/alice/page?n=1`);
    assert.equal(resp.status(), 200);
    await ctx.close();
  });
});
