import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../../functions/broker/errors.ts';
import {
  validateLoginHint,
  validatePrompt,
  validateReturnTo,
} from '../../../functions/broker/login.ts';

describe('Function: validateReturnTo', () => {
  describe('with the default prefix "/"', () => {
    it.each([
      '/',
      '/app',
      '/app/x/y',
      '/app?tab=1&x=%2F',
      '/app#section',
      '/a/b.c/d..e/.f',
      '/caf%C3%A9',
      "/x-_~!$&'()*+,;=:@",
      '/https:evil',
    ])('accepts %j', (value) => {
      expect(validateReturnTo(value, ['/'])).toBe(value);
    });

    it.each([
      ['', 'empty'],
      ['app', 'no leading slash'],
      ['//evil.example.com', 'protocol-relative'],
      ['//evil.example.com/path', 'protocol-relative with path'],
      ['/\\evil.example.com', 'slash backslash'],
      ['\\\\evil.example.com', 'backslashes'],
      ['/app\\..\\x', 'backslash inside'],
      ['https:evil.example.com', 'scheme without slashes'],
      ['https://evil.example.com', 'absolute URL'],
      ['javascript:alert(1)', 'javascript URL'],
      ['/%2F%2Fevil.example.com', 'encoded slashes'],
      ['/%2f%2fevil.example.com', 'lower-case encoded slashes'],
      ['/%5Cevil.example.com', 'encoded backslash'],
      ['/%5cevil.example.com', 'lower-case encoded backslash'],
      ['/%252F%252Fevil', 'double encoding'],
      ['/app/%2E%2E/admin', 'encoded dot segment'],
      ['/app/../admin', 'dot-dot segment'],
      ['/app/./x', 'dot segment'],
      ['/app/..', 'trailing dot-dot'],
      ['/app\r\nSet-Cookie: x=1', 'CR LF'],
      ['/app%0D%0ASet-Cookie:x=1', 'encoded CR LF'],
      ['/app?x=%0d%0a', 'encoded CR LF in the query'],
      ['/app\u0000', 'NUL'],
      ['/app%00', 'encoded NUL'],
      ['/app\t', 'tab'],
      ['/ app', 'space'],
      ['/app%', 'dangling percent'],
      ['/app%zz', 'bad escape'],
      ['/app%C3', 'truncated UTF-8'],
      ['/app<script>', 'angle brackets'],
      ['/app"', 'quote'],
      [`/${'a'.repeat(2048)}`, 'too long'],
    ])('rejects %j (%s) with invalid_request', (value: string) => {
      expect(() => validateReturnTo(value, ['/'])).toThrow(InvalidRequestError);
      try {
        validateReturnTo(value, ['/']);
      } catch (error) {
        expect((error as InvalidRequestError).code).toBe('invalid_request');
        expect((error as InvalidRequestError).status).toBe(400);
      }
    });
  });

  describe('as a URL on an allowed origin (browser apps on their own origin)', () => {
    const origins = ['https://app.example.com', 'http://localhost:5173'];

    it.each([
      'https://app.example.com/',
      'https://app.example.com/dashboard?tab=1#top',
      'http://localhost:5173/app',
    ])('accepts %j', (value) => {
      expect(validateReturnTo(value, ['/'], origins)).toBe(value);
    });

    it.each([
      ['https://evil.example.com/', 'a foreign origin'],
      ['https://app.example.com.evil.net/', 'an allowed origin as a prefix of the host'],
      ['https://app.example.com', 'no path'],
      ['https://app.example.com:443/', 'an equivalent spelling of the origin'],
      ['HTTPS://app.example.com/', 'another case of the scheme'],
      ['http://app.example.com/', 'another scheme'],
      ['https://user@app.example.com/', 'user info'],
      ['https://app.example.com@evil.net/', 'user info hiding the real host'],
      ['https://app.example.com//evil.net', 'a protocol-relative path after the origin'],
      ['https://app.example.com/\\evil.net', 'a backslash after the origin'],
      ['https://app.example.com/../x', 'a dot segment'],
      ['https://app.example.com/%2F%2Fevil', 'encoded slashes'],
      ['javascript:alert(1)', 'a javascript URL'],
    ])('rejects %j (%s)', (value) => {
      expect(() => validateReturnTo(value, ['/'], origins)).toThrow(InvalidRequestError);
    });

    it('applies the path prefixes after the origin', () => {
      expect(validateReturnTo('https://app.example.com/app/x', ['/app'], origins)).toBe(
        'https://app.example.com/app/x',
      );
      expect(() => validateReturnTo('https://app.example.com/other', ['/app'], origins)).toThrow(
        InvalidRequestError,
      );
    });

    it('refuses every absolute URL when no origin is allowed', () => {
      expect(() => validateReturnTo('https://app.example.com/', ['/'])).toThrow(
        InvalidRequestError,
      );
    });
  });

  describe('with allow-listed prefixes', () => {
    const prefixes = ['/app', '/docs/'];

    it.each(['/app', '/app/', '/app/x', '/app?x=1', '/app#top', '/docs', '/docs/a'])(
      'accepts %j (whole path segments)',
      (value) => {
        expect(validateReturnTo(value, prefixes)).toBe(value);
      },
    );

    it.each(['/', '/application', '/apps/x', '/ap', '/documents', '/other/app', '/%61pplication'])(
      'rejects %j',
      (value) => {
        expect(() => validateReturnTo(value, prefixes)).toThrow(InvalidRequestError);
      },
    );
  });
});

describe('Function: validatePrompt', () => {
  it.each([
    [undefined, undefined],
    ['login', 'login'],
    ['consent', 'consent'],
    ['select_account', 'select_account'],
    ['login consent', 'login consent'],
    ['login  select_account', 'login select_account'],
  ])('accepts %j', (value, expected) => {
    expect(validatePrompt(value)).toBe(expected);
  });

  it.each(['', ' ', 'none', 'login login', 'LOGIN', 'login,consent', 'login\nconsent'])(
    'rejects %j',
    (value) => {
      expect(() => validatePrompt(value)).toThrow(InvalidRequestError);
    },
  );
});

describe('Function: validateLoginHint', () => {
  it.each([undefined, 'user@example.com', 'jürgen@beispiel.de', 'a'.repeat(256)])(
    'accepts %j',
    (value) => {
      expect(validateLoginHint(value)).toBe(value);
    },
  );

  it.each(['', 'a b', 'user\r\n@example.com', 'user\u0000', 'a'.repeat(257), 'x\u200By'])(
    'rejects %j',
    (value) => {
      expect(() => validateLoginHint(value)).toThrow(InvalidRequestError);
    },
  );
});
