import { describe, expect, it } from 'vitest';
import { newSessionHandle } from '../../../functions/broker/session-handle.ts';
import {
  CLEAR_LOGIN_COOKIE,
  CLEAR_SESSION_COOKIE,
  hostCookie,
  loginCookie,
  sessionCookie,
} from '../../../functions/http/cookies.ts';

/** Splits a Set-Cookie value into its name, value and lower-cased attribute map. */
function parse(setCookie: string) {
  const [pair = '', ...attributes] = setCookie.split(';').map((part) => part.trim());
  const index = pair.indexOf('=');
  return {
    name: pair.slice(0, index),
    value: pair.slice(index + 1),
    attributes: Object.fromEntries(
      attributes.map((attribute) => {
        const [key = '', val = ''] = attribute.split('=');
        return [key.toLowerCase(), val];
      }),
    ),
  };
}

describe('Login and session cookies', () => {
  it('builds the login cookie: __Host-, Secure, HttpOnly, SameSite=Lax, Path=/, Max-Age=600', () => {
    const cookie = parse(loginCookie('abc_DEF-123'));

    expect(cookie).toEqual({
      name: '__Host-tb-login',
      value: 'abc_DEF-123',
      attributes: { 'max-age': '600', path: '/', secure: '', httponly: '', samesite: 'Lax' },
    });
  });

  it('clears the login cookie with Max-Age=0 and the same attributes', () => {
    expect(parse(CLEAR_LOGIN_COOKIE)).toEqual({
      name: '__Host-tb-login',
      value: '',
      attributes: { 'max-age': '0', path: '/', secure: '', httponly: '', samesite: 'Lax' },
    });
  });

  it('builds the session cookie: SameSite=Strict, no Domain, no Max-Age', () => {
    const handle = newSessionHandle();

    const cookie = parse(sessionCookie(handle));

    expect(cookie).toEqual({
      name: '__Host-tb-session',
      value: handle,
      attributes: { path: '/', secure: '', httponly: '', samesite: 'Strict' },
    });
    expect(parse(CLEAR_SESSION_COOKIE).name).toBe(cookie.name);
  });

  it('clears the session cookie with Max-Age=0 and the same attributes', () => {
    expect(CLEAR_SESSION_COOKIE).toBe(
      '__Host-tb-session=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict',
    );
  });

  it.each([
    ['tb-login', 'v', 'a name without the __Host- prefix'],
    ['__Host-a b', 'v', 'a space in the name'],
    ['__Host-x', 'a;b', 'a semicolon in the value'],
    ['__Host-x', 'a b', 'a space in the value'],
    ['__Host-x', 'a\r\nb', 'CR LF in the value'],
  ])('refuses %j=%j (%s)', (name: string, value: string) => {
    expect(() => hostCookie(name, value, { sameSite: 'Lax' })).toThrow(TypeError);
  });
});
