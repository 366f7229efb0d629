/**
 * Every cookie the broker reads or sets, by name and by `Set-Cookie` value: all of them are
 * built by {@link hostCookie}, none by hand.
 */

/** The browser's session handle (README "HTTP contract (v1)"). */
export const SESSION_COOKIE = '__Host-tb-session';

/** The cookie binding a login transaction to the browser that started it. */
export const LOGIN_COOKIE = '__Host-tb-login';

/** Seconds the login cookie lives: the login transaction's 10 minutes. */
export const LOGIN_COOKIE_MAX_AGE = 600;

/** RFC 6265 `cookie-octet`s (no space, quote, comma, semicolon or backslash). */
const COOKIE_VALUE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/;

export interface CookieAttributes {
  /** `Lax` for the login cookie (it must come back on Salesforce's top-level redirect). */
  sameSite: 'Strict' | 'Lax';
  /** Seconds; omitted for a cookie that lives as long as the browser session. */
  maxAge?: number | undefined;
}

/**
 * A `Set-Cookie` value for a `__Host-` cookie: always `Path=/; Secure; HttpOnly`, never a
 * `Domain`, so the browser binds it to this exact host and scripts cannot read it.
 * @see https://www.rfc-editor.org/rfc/rfc6265#section-4.1
 * @see https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis#name-the-__host-prefix
 */
export function hostCookie(name: string, value: string, attributes: CookieAttributes): string {
  if (!name.startsWith('__Host-') || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) {
    throw new TypeError('cookie name must be a token starting with "__Host-"');
  }
  if (!COOKIE_VALUE.test(value)) throw new TypeError('cookie value has characters not allowed');
  const parts = [`${name}=${value}`];
  if (attributes.maxAge !== undefined) {
    if (!Number.isSafeInteger(attributes.maxAge) || attributes.maxAge < 0) {
      throw new TypeError('cookie Max-Age must be a non-negative integer');
    }
    parts.push(`Max-Age=${attributes.maxAge}`);
  }
  parts.push('Path=/', 'Secure', 'HttpOnly', `SameSite=${attributes.sameSite}`);
  return parts.join('; ');
}

/**
 * `__Host-tb-login=<value>; Max-Age=600; Path=/; Secure; HttpOnly; SameSite=Lax`. `Lax`
 * because the browser must send it on the cross-site top-level redirect from Salesforce.
 */
export function loginCookie(value: string): string {
  return hostCookie(LOGIN_COOKIE, value, { sameSite: 'Lax', maxAge: LOGIN_COOKIE_MAX_AGE });
}

/** Removes the login cookie (the transaction is consumed either way). */
export const CLEAR_LOGIN_COOKIE = /* @__PURE__ */ hostCookie(LOGIN_COOKIE, '', {
  sameSite: 'Lax',
  maxAge: 0,
});

/** `__Host-tb-session=<handle>; Path=/; Secure; HttpOnly; SameSite=Strict` (README "HTTP contract (v1)"). */
export function sessionCookie(handle: string): string {
  return hostCookie(SESSION_COOKIE, handle, { sameSite: 'Strict' });
}

/** Removes the session cookie (`/logout`): the same attributes, `Max-Age=0`. */
export const CLEAR_SESSION_COOKIE = /* @__PURE__ */ hostCookie(SESSION_COOKIE, '', {
  sameSite: 'Strict',
  maxAge: 0,
});
