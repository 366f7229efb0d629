import { describe, expect, it } from 'vitest';
import {
  canonicalHost,
  DEFAULT_LOGIN_HOSTS,
  loginHostPatternProblem,
  loginHostUrl,
  matchLoginHost,
} from '../../../functions/shared/login-hosts.ts';

describe('Function: matchLoginHost', () => {
  it.each([
    ['login.salesforce.com', 'login.salesforce.com'],
    ['test.salesforce.com', 'test.salesforce.com'],
    ['acme.my.salesforce.com', 'acme.my.salesforce.com'],
    ['acme--dev.sandbox.my.salesforce.com', 'acme--dev.sandbox.my.salesforce.com'],
    ['xn--80ak6aa92e.my.salesforce.com', 'xn--80ak6aa92e.my.salesforce.com'],
    // Case-insensitive, one trailing dot: the canonical form comes back.
    ['ACME.My.Salesforce.COM', 'acme.my.salesforce.com'],
    ['login.salesforce.com.', 'login.salesforce.com'],
  ])('accepts %s on the default list as %s', (requested, canonical) => {
    // Act
    const matched = matchLoginHost(requested, DEFAULT_LOGIN_HOSTS);

    // Assert
    expect(matched).toBe(canonical);
  });

  it.each([
    // Look-alikes
    'evil-my.salesforce.com',
    'my.salesforce.com.evil.test',
    'acmemy.salesforce.com',
    'login.salesforce.com.evil.test',
    'login-salesforce.com',
    // A wildcard matches exactly one label
    'my.salesforce.com',
    'a.b.my.salesforce.com',
    '.my.salesforce.com',
    // Ports, user info, schemes, paths, queries
    'acme.my.salesforce.com:444',
    'acme.my.salesforce.com:443',
    'user@acme.my.salesforce.com',
    'acme.my.salesforce.com@evil.test',
    'https://acme.my.salesforce.com',
    'acme.my.salesforce.com/path',
    'acme.my.salesforce.com?x=1',
    'acme.my.salesforce.com#x',
    // Not DNS names
    '',
    '.',
    'login.salesforce.com..',
    'acme .my.salesforce.com',
    '-acme.my.salesforce.com',
    'acme-.my.salesforce.com',
    'ac_me.my.salesforce.com',
    `${'a'.repeat(64)}.my.salesforce.com`,
    'ас.my.salesforce.com',
    'acme.my.salesforce.com\u0000',
    // IP literals, in every spelling a URL parser would read
    '127.0.0.1',
    '10.0.0.1',
    '2130706433',
    '0x7f.0.0.1',
    '[::1]',
    '::1',
    // A Salesforce host that is not on the list
    'acme.my.site.com',
  ])('refuses %j on the default list', (requested) => {
    // Act
    const matched = matchLoginHost(requested, DEFAULT_LOGIN_HOSTS);

    // Assert
    expect(matched).toBeUndefined();
  });

  it('accepts Experience Cloud sites and custom domains only when listed', () => {
    // Prepare
    const patterns = [...DEFAULT_LOGIN_HOSTS, '*.my.site.com', 'login.acme.example'];

    // Act + Assert
    expect(matchLoginHost('acme.my.site.com', patterns)).toBe('acme.my.site.com');
    expect(matchLoginHost('login.acme.example', patterns)).toBe('login.acme.example');
    expect(matchLoginHost('other.acme.example', patterns)).toBeUndefined();
    expect(matchLoginHost('acme.my.site.com', DEFAULT_LOGIN_HOSTS)).toBeUndefined();
  });

  it('accepts a loopback address only when it is itself listed', () => {
    // Prepare
    const loopback = ['127.0.0.1', '127.0.0.2'];

    // Act + Assert
    expect(matchLoginHost('127.0.0.2', loopback)).toBe('127.0.0.2');
    expect(matchLoginHost('127.0.0.3', loopback)).toBeUndefined();
    expect(matchLoginHost('127.0.0.2:8080', loopback)).toBeUndefined();
    expect(matchLoginHost('127.0.0.1', DEFAULT_LOGIN_HOSTS)).toBeUndefined();
    expect(matchLoginHost('localhost', DEFAULT_LOGIN_HOSTS)).toBeUndefined();
  });
});

describe('Function: loginHostPatternProblem', () => {
  it.each([
    ...DEFAULT_LOGIN_HOSTS,
    '*.my.site.com',
    'login.acme.example',
    '127.0.0.1',
    'localhost',
  ])('accepts %s', (pattern) => {
    // Act + Assert
    expect(loginHostPatternProblem(pattern)).toBeUndefined();
  });

  it.each([
    '*',
    '*.com',
    '**.my.salesforce.com',
    'a.*.salesforce.com',
    '*acme.my.salesforce.com',
    'Login.Salesforce.com',
    'login.salesforce.com.',
    'login.salesforce.com:443',
    'https://login.salesforce.com',
    'user@login.salesforce.com',
    '10.0.0.1',
    '*.127.0.0.1',
    '',
  ])('refuses %j', (pattern) => {
    // Act + Assert
    expect(loginHostPatternProblem(pattern)).toEqual(expect.any(String));
  });
});

describe('Function: canonicalHost', () => {
  it('lower-cases and drops one trailing dot', () => {
    // Act + Assert
    expect(canonicalHost('Test.Salesforce.com.')).toBe('test.salesforce.com');
  });
});

describe('Function: loginHostUrl', () => {
  it('keeps the scheme and port of the configured login URL', () => {
    // Act
    const deployed = loginHostUrl(
      'acme.my.salesforce.com',
      new URL('https://login.salesforce.com'),
    );
    const local = loginHostUrl('127.0.0.2', new URL('http://127.0.0.1:41234'));

    // Assert
    expect(deployed.origin).toBe('https://acme.my.salesforce.com');
    expect(local.origin).toBe('http://127.0.0.2:41234');
  });
});
