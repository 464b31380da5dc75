'use strict';
// Small helpers shared by the authgate suites.
const { submitLogin } = require('./browser');

/** Runs every stop function even when some throw; rethrows the first error. */
async function stopAll(...stops) {
  const results = await Promise.allSettled(stops.filter(Boolean).map((f) => f()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** The Cookie header a Playwright context would send to `url`. */
async function cookieHeader(context, url) {
  const cookies = await context.cookies(url);
  return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

/** authgate's session cookies (NAME or NAME_<n>) held by a context, not the CSRF ones. */
async function sessionCookies(context, name = '_oauth2_proxy') {
  const re = new RegExp(`^${name}(_\\d+)?$`);
  return (await context.cookies()).filter((c) => re.test(c.name) && c.value !== '');
}

/**
 * Navigates to `url`; when the browser lands on the IdP's login form, logs in
 * as `user`. Resolves with the final navigation's response.
 */
async function browserLogin(page, url, user, idp) {
  let resp = await page.goto(url);
  if (page.url().startsWith(`${idp.issuer}/interaction/`)) {
    resp = await submitLogin(page, user, user);
  }
  return resp;
}

/** True when `res` is a 302/303 to the IdP's authorization endpoint. */
function redirectsToIdp(res, idp) {
  return (res.status === 302 || res.status === 303)
    && typeof res.headers.location === 'string'
    && res.headers.location.startsWith(`${idp.issuer}/auth`);
}

/** Cookie names in a Set-Cookie list. */
function setCookieNames(setCookies) {
  return setCookies.map((l) => l.slice(0, l.indexOf('=')).trim());
}

/** Parses Prometheus text into [{name, labels, value}]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const lm of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

module.exports = {
  stopAll, cookieHeader, sessionCookies, browserLogin, redirectsToIdp, setCookieNames, parseMetrics,
};

/**
 * node:test's it/before/after, gated on the authgate binary: when it is
 * missing every test is reported as skipped with the reason, and hooks do nothing.
 */
function gate(reason) {
  const t = require('node:test');
  if (!reason) return { it: t.it, before: t.before, after: t.after };
  const skipIt = (name, opts, fn) => t.it(name, { ...(typeof opts === 'object' ? opts : {}), skip: reason }, () => {});
  return { it: skipIt, before: () => {}, after: () => {} };
}
module.exports.gate = gate;
