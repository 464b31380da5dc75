'use strict';
// Issue 9, faults 7 and 8, in the field: Debian's nginx in front of authgate
// with oauth2-proxy's documented `auth_request` configuration (its
// `error_page 401 = @oauth2_signin` → `/oauth2/sign_in?rd=…`, and
// `X-Auth-Request-Redirect $request_uri` on `location /oauth2/`), adapted
// only in `$host` → `$http_host` (the test's ports), a real oidc-provider
// that refuses unregistered post-logout URIs, and Chromium.
const { describe } = require('node:test');
const assert = require('node:assert/strict');
const { startIdp } = require('./lib/idp');
const { startNginx, startNginxServer, parseEcho } = require('./lib/nginx');
const { launchBrowser, newContext, submitLogin } = require('./lib/browser');
const { skipReason, allocatePorts, baseConfig, startAuthgate } = require('./lib/authgate');
const { stopAll, sessionCookies, gate } = require('./lib/common');

const { it, before, after } = gate(skipReason());

/** oauth2-proxy's nginx `auth_request` example (docs: "Configuring for use with the Nginx auth_request directive"). */
function oauth2ProxyNginxSite(agUrl, appUrl) {
  return `
    location /oauth2/ {
      proxy_pass       ${agUrl};
      proxy_set_header Host                    $http_host;
      proxy_set_header X-Real-IP               $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
    }
    location = /oauth2/auth {
      proxy_pass       ${agUrl};
      proxy_set_header Host             $http_host;
      proxy_set_header X-Real-IP        $remote_addr;
      proxy_set_header X-Forwarded-Uri  $request_uri;
      proxy_set_header Content-Length   "";
      proxy_pass_request_body           off;
    }
    location / {
      auth_request /oauth2/auth;
      error_page 401 = @oauth2_signin;
      auth_request_set $user   $upstream_http_x_auth_request_user;
      auth_request_set $email  $upstream_http_x_auth_request_email;
      proxy_set_header X-User  $user;
      proxy_set_header X-Email $email;
      proxy_pass ${appUrl};
    }
    location @oauth2_signin {
      return 302 /oauth2/sign_in?rd=$scheme://$http_host$request_uri;
    }
`;
}

describe('oauth2-proxy\'s nginx configuration, unchanged: /oauth2/sign_in and sign-out (issue 9, faults 7 and 8)', () => {
  let app;
  let front;
  let idp;
  let ag;
  let browser;

  before(async () => {
    app = await startNginx();
    const ports = await allocatePorts();
    front = await startNginxServer(() => oauth2ProxyNginxSite(`http://127.0.0.1:${ports.listen}`, app.url));
    idp = await startIdp({
      redirectUris: [`${front.url}/oauth2/callback`],
      // Only the site's root: the IdP refuses any other post-logout target.
      postLogoutRedirectUris: [`${front.url}/`],
    });
    ag = await startAuthgate({ ports, config: baseConfig({ ports, idp, upstreamUrl: app.url }) });
    browser = await launchBrowser();
  });

  after(async () => {
    await stopAll(() => browser?.close(), () => ag?.stop(), () => idp?.stop(), () => front?.stop(), () => app?.stop());
  });

  it('signs alice in through /oauth2/sign_in and lands her on the page she asked for', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const hops = [];
    page.on('request', (r) => { if (r.isNavigationRequest()) hops.push(r.url()); });
    await page.goto(`${front.url}/some/page?q=1`);
    assert.ok(page.url().startsWith(`${idp.issuer}/interaction/`), `expected the IdP login page, got ${page.url()}`);
    const wanted = `${front.url}/some/page?q=1`;
    assert.ok(
      hops.includes(`${front.url}/oauth2/sign_in?rd=${wanted}`),
      `nginx sent the browser to /oauth2/sign_in: ${hops.join(' ')}`,
    );
    const resp = await submitLogin(page, 'alice', 'alice');
    assert.equal(page.url(), wanted);
    assert.equal(resp.status(), 200);
    const echo = parseEcho(await resp.text());
    // nginx's `proxy_pass` speaks HTTP/1.0 to the app.
    assert.match(echo.requestLine, /^GET \/some\/page\?q=1 HTTP\/1\.[01]$/);
    assert.deepEqual(echo.get('x-email'), ['alice@example.com']);
    await context.close();
  });

  it('follows a plain sign-out link to the IdP and back to /, not to /oauth2/sign_out', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await page.goto(`${front.url}/before-sign-out`);
    assert.equal((await submitLogin(page, 'alice', 'alice')).status(), 200);
    assert.ok((await sessionCookies(context)).length > 0);
    const ended = idp.stats.endSessions;
    // nginx adds `X-Auth-Request-Redirect: /oauth2/sign_out` to this one.
    const landed = await page.goto(`${front.url}/oauth2/sign_out`);
    const signOut = landed.request().redirectedFrom();
    assert.ok(signOut, `sign_out was not redirected: ${page.url()}`);
    const loc = new URL((await signOut.response()).headers().location);
    assert.equal(`${loc.origin}${loc.pathname}`, `${idp.issuer}/session/end`);
    assert.equal(loc.searchParams.get('post_logout_redirect_uri'), `${front.url}/`);
    assert.equal(landed.status(), 200, 'the IdP accepted the post-logout target');
    assert.deepEqual((await sessionCookies(context)).map((c) => c.name), [], 'sign_out clears the session cookie');
    const seen = [];
    page.on('request', (r) => seen.push(r.url()));
    await Promise.all([page.waitForURL(`${idp.issuer}/interaction/**`), page.click('#logout-yes')]);
    assert.equal(idp.stats.endSessions, ended + 1, 'the IdP ended its session');
    assert.ok(seen.includes(`${front.url}/`), `the IdP sent the browser back to /: ${seen.join(' ')}`);
    assert.ok(!seen.some((u) => u.startsWith(`${front.url}/oauth2/sign_out`)), `sign_out again: ${seen.join(' ')}`);
    // Signed out at the IdP too: it asks for the password again.
    await page.waitForSelector('input[name=password]');
    await context.close();
  });
});
