import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../../functions/broker/errors.ts';
import { parseQuery, singleParameter } from '../../../functions/http/query.ts';

describe('Function: parseQuery (login and callback parameters)', () => {
  it('decodes form-encoded names and values, keeping repeats apart', () => {
    // Act
    const query = parseQuery('code=aPrx%2Bb%2Fc%3D%3D&state=s&x=a+b&x=c&flag&=empty&&');

    // Assert
    expect(query.get('code')).toEqual(['aPrx+b/c==']);
    expect(query.get('x')).toEqual(['a b', 'c']);
    expect(query.get('flag')).toEqual(['']);
    expect(query.get('')).toEqual(['empty']);
  });

  it('decodes multi-byte UTF-8', () => {
    expect(parseQuery('login_hint=j%C3%BCrgen%F0%9F%98%80').get('login_hint')).toEqual([
      'jürgen😀',
    ]);
  });

  it.each([
    ['state=%', 'dangling percent'],
    ['state=%4', 'short escape'],
    ['state=%zz', 'bad hex'],
    ['state=%C3', 'truncated UTF-8'],
    ['state=%FF%FE', 'invalid UTF-8 bytes'],
    ['state=%ED%A0%80', 'UTF-8 encoded surrogate'],
    ['state=%C0%AF', 'overlong encoding'],
    ['state=a%0Db', 'CR'],
    ['state=a%0Ab', 'LF'],
    ['state=a%00b', 'NUL'],
    ['state=a%09b', 'tab'],
    ['state=a%7Fb', 'DEL'],
    ['state=a%C2%85b', 'C1 NEL'],
    ['st%00ate=x', 'NUL in a name'],
    ['state=a b', 'raw space'],
    ['state=a\r\nb', 'raw CR LF'],
    ['state=é', 'raw non-ASCII'],
    [`state=${'a'.repeat(2049)}`, 'value over 2 KB'],
    [`state=${'%C3%A9'.repeat(1025)}`, 'decoded value over 2 KB'],
    [`a=${'b'.repeat(1000)}&`.repeat(10), 'query over 8 KB'],
    [`code=${'x'.repeat(100 * 1024)}`, '100 KB'],
  ])('rejects %j (%s) with invalid_request', (raw: string) => {
    expect(() => parseQuery(raw)).toThrow(InvalidRequestError);
  });

  it('accepts a value of exactly 2 KB', () => {
    expect(parseQuery(`state=${'a'.repeat(2048)}`).get('state')?.[0]).toHaveLength(2048);
  });
});

describe('Function: singleParameter', () => {
  it('returns the only value, or undefined when absent', () => {
    const query = parseQuery('code=c&state=s');

    expect(singleParameter(query, 'code')).toBe('c');
    expect(singleParameter(query, 'error')).toBeUndefined();
  });

  it.each(['state=a&state=b', 'state=a&state=a', 'state=a&code=c&state='])(
    'refuses a repeated parameter in %j',
    (raw) => {
      expect(() => singleParameter(parseQuery(raw), 'state')).toThrow(InvalidRequestError);
    },
  );
});
