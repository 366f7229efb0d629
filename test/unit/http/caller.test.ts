import { describe, expect, it } from 'vitest';
import { CsrfCheckFailedError, InvalidSessionError } from '../../../functions/broker/errors.ts';
import { newSessionHandle } from '../../../functions/broker/session-handle.ts';
import { callerHandle } from '../../../functions/http/caller.ts';
import type { HttpRequest } from '../../../functions/http/request.ts';
import { parseRefreshBody } from '../../../functions/routes/refresh.ts';

const ORIGINS = ['https://app.example.com'];

function request(headers: Record<string, string>, cookies: string[] = []): HttpRequest {
  return {
    method: 'POST',
    path: '/refresh',
    headers,
    cookies,
    rawQueryString: '',
    body: undefined,
    requestId: 'r',
  };
}

describe('Function: callerHandle', () => {
  const handle = newSessionHandle();

  it('accepts a bearer handle without CSRF header and ignores the cookie', () => {
    const other = newSessionHandle();
    expect(
      callerHandle(
        request({ authorization: `Bearer ${handle}` }, [`__Host-tb-session=${other}`]),
        ORIGINS,
      ),
    ).toBe(handle);
  });

  it('accepts the cookie with X-CSRF: 1 and an allowed Origin', () => {
    const result = callerHandle(
      request({ 'x-csrf': '1', origin: 'https://app.example.com' }, [
        `__Host-tb-session=${handle}`,
      ]),
      ORIGINS,
    );
    expect(result).toBe(handle);
  });

  it.each([
    [{}, 'missing X-CSRF'],
    [{ 'x-csrf': 'true' }, 'X-CSRF other than 1'],
    [{ 'x-csrf': '1', origin: 'https://evil.example.com' }, 'foreign Origin'],
    [{ 'x-csrf': '1', origin: 'null' }, 'opaque Origin'],
  ])(
    'rejects the cookie with %j (%s) before any lookup',
    (headers: Record<string, string>, _why: string) => {
      expect(() =>
        callerHandle(request(headers, [`__Host-tb-session=${handle}`]), ORIGINS),
      ).toThrow(CsrfCheckFailedError);
    },
  );

  it.each([
    [{ authorization: 'Basic abc' }, []],
    [{ authorization: 'Bearer short' }, []],
    [{ 'x-csrf': '1' }, ['__Host-tb-session=not-a-handle']],
    [{}, []],
  ])('rejects %j %j as invalid_session', (headers, cookies) => {
    expect(() => callerHandle(request(headers, cookies), ORIGINS)).toThrow(InvalidSessionError);
  });

  it.each([
    ['Bearer x', /session handle is malformed or unknown/],
    [`Bearer ${'A'.repeat(43)}!`, /session handle is malformed or unknown/],
    ['Basic abc', /Authorization header must be "Bearer <session handle>"/],
    ['Bearer', /Authorization header must be "Bearer <session handle>"/],
  ])('answers %j with a description naming what is wrong', (authorization, description) => {
    // Act
    const rejection = (() => {
      try {
        callerHandle(request({ authorization }), ORIGINS);
      } catch (error) {
        return error;
      }
      throw new Error('accepted');
    })();

    // Assert: the same 401 invalid_session either way; only the description differs
    expect(rejection).toBeInstanceOf(InvalidSessionError);
    expect(rejection).toMatchObject({ status: 401, code: 'invalid_session' });
    expect((rejection as InvalidSessionError).safeDescription).toMatch(description);
  });
});

describe('Function: parseRefreshBody', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['{}', undefined],
    ['{"version": 3}', 3],
  ])('reads %j as %j', (body, expected) => {
    expect(parseRefreshBody(body)).toBe(expected);
  });

  it.each(['nope', '[]', 'null', '{"version":"3"}', '{"version":-1}', '{"version":1.5}'])(
    'rejects %s',
    (body) => {
      expect(() => parseRefreshBody(body)).toThrow(/version|JSON/);
    },
  );
});
