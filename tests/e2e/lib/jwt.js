'use strict';
// Mints JWTs for the bearer tests: validly signed ones with the IdP's own key
// (wrong aud, expired...), and forged ones (alg none, HS256 keyed with the
// public key).
const crypto = require('node:crypto');

const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

/** RS256 with a private KeyObject. */
function signRs256(payload, privateKey, kid) {
  const head = enc({ alg: 'RS256', typ: 'JWT', kid });
  const body = enc(payload);
  const sig = crypto.sign('RSA-SHA256', Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
  return `${head}.${body}.${sig}`;
}

/** `alg: none`, empty signature. */
function unsigned(payload, kid) {
  return `${enc({ alg: 'none', typ: 'JWT', kid })}.${enc(payload)}.`;
}

/** HS256 whose HMAC key is the issuer's public key (the classic key-confusion forgery). */
function hs256WithPublicKey(payload, publicKey, kid) {
  const head = enc({ alg: 'HS256', typ: 'JWT', kid });
  const body = enc(payload);
  const secret = publicKey.export({ format: 'pem', type: 'spki' });
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

module.exports = { signRs256, unsigned, hs256WithPublicKey };
