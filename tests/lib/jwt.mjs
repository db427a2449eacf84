// JSON Web Tokens for the access-token tests, made with node:crypto alone so the tests do not
// share code with the server: HS256 as a backend would sign them, and the bad kinds no backend
// should (alg none, another algorithm, a wrong secret, garbage).
import { createHmac } from 'node:crypto';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Seconds since the epoch, now. */
export const nowSecs = () => Math.floor(Date.now() / 1000);

/** A signed JWT of `claims` (exp defaults to one hour from now) with `alg` HS256/HS384/HS512. */
export function sign(secret, claims = {}, { alg = 'HS256', header = {} } = {}) {
  const body = { exp: nowSecs() + 3600, ...claims };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  const head = b64url(JSON.stringify({ alg, typ: 'JWT', ...header }));
  const payload = b64url(JSON.stringify(body));
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg];
  const sig = hash ? createHmac(hash, secret).update(`${head}.${payload}`).digest('base64url') : '';
  return `${head}.${payload}.${sig}`;
}

/** An unsigned token (`alg: none`), as in the classic JWT attack. */
export function unsigned(claims = {}) {
  const head = b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ exp: nowSecs() + 3600, ...claims }));
  return `${head}.${payload}.`;
}

/** Decodes a JWT's header and claims and checks its HS256 signature with `secret`. */
export function verify(token, secret) {
  const [head, payload, sig] = token.split('.');
  const expected = createHmac('sha256', secret).update(`${head}.${payload}`).digest('base64url');
  return {
    header: JSON.parse(Buffer.from(head, 'base64url')),
    claims: JSON.parse(Buffer.from(payload, 'base64url')),
    valid: sig === expected,
  };
}

/** Every token the server must refuse, by name, for `secret`. */
export function badTokens(secret) {
  const now = nowSecs();
  return {
    garbage: 'not-a-jwt',
    'wrong signature': sign(`${secret}-other`),
    'alg none': unsigned(),
    'alg HS512': sign(secret, {}, { alg: 'HS512' }),
    expired: sign(secret, { exp: now - 1 }),
    'nbf in the future': sign(secret, { nbf: now + 60 }),
    'no exp': sign(secret, { exp: undefined }),
  };
}
