import { describe, expect, it } from 'vitest';
import {
  type ClientApp,
  isRegisteredRedirectUri,
  parseClientApps,
  redirectUriProblem,
  serializeClientApps,
} from '../../../functions/shared/client-apps.ts';

const app = (...redirectUris: string[]): ClientApp => ({ clientId: 'app', redirectUris });

describe('parseClientApps: the clientApps setting and CLIENT_APPS', () => {
  it('reads JSON text and the parsed array alike, and round-trips through CLIENT_APPS', () => {
    // Prepare
    const apps = [
      { client_id: 'ios', redirect_uris: ['com.example.app:/oauth2redirect'] },
      { client_id: 'desktop.v2', redirect_uris: ['http://127.0.0.1/cb', 'http://[::1]/cb'] },
      { client_id: 'nightly_job-1', redirect_uris: ['https://jobs.example.com/done?x=1'] },
    ];

    // Act
    const fromText = parseClientApps(JSON.stringify(apps));
    const fromArray = parseClientApps(apps);

    // Assert
    expect(fromText).toEqual([
      { clientId: 'ios', redirectUris: ['com.example.app:/oauth2redirect'] },
      { clientId: 'desktop.v2', redirectUris: ['http://127.0.0.1/cb', 'http://[::1]/cb'] },
      { clientId: 'nightly_job-1', redirectUris: ['https://jobs.example.com/done?x=1'] },
    ]);
    expect(fromArray).toEqual(fromText);
    expect(parseClientApps(serializeClientApps(fromText))).toEqual(fromText);
  });

  it('treats absent and empty as no apps', () => {
    expect(parseClientApps(undefined)).toEqual([]);
    expect(parseClientApps('')).toEqual([]);
    expect(parseClientApps('  ')).toEqual([]);
    expect(parseClientApps('[]')).toEqual([]);
  });

  it.each([
    ['not JSON', '{', /JSON array/],
    ['an object', '{"client_id":"x"}', /JSON array/],
    ['an entry that is not an object', '["ios"]', /entry 0 must be an object/],
    [
      'an unknown member',
      '[{"client_id":"a","redirect_uris":["https://a.example/"],"secret":1}]',
      /unknown member "secret"/,
    ],
    [
      'a client_id with a space',
      '[{"client_id":"my app","redirect_uris":["https://a.example/"]}]',
      /"client_id" must be/,
    ],
    [
      'a client_id over 64 characters',
      `[{"client_id":"${'a'.repeat(65)}","redirect_uris":["https://a.example/"]}]`,
      /"client_id" must be/,
    ],
    [
      'a duplicated client_id',
      '[{"client_id":"a","redirect_uris":["https://a.example/"]},{"client_id":"a","redirect_uris":["https://b.example/"]}]',
      /listed twice/,
    ],
    ['no redirect URIs', '[{"client_id":"a","redirect_uris":[]}]', /must list 1 to/],
    [
      'redirect URIs that are not strings',
      '[{"client_id":"a","redirect_uris":[1]}]',
      /must hold strings/,
    ],
    ['a scheme without a dot', '[{"client_id":"a","redirect_uris":["myapp:/cb"]}]', /reverse-DNS/],
    [
      'http on localhost',
      '[{"client_id":"a","redirect_uris":["http://localhost:8080/cb"]}]',
      /loopback IP literals/,
    ],
  ])('refuses %s, naming the problem', (_name, value, message) => {
    expect(() => parseClientApps(value)).toThrow(message);
  });
});

describe('redirectUriProblem: what may be registered (RFC 8252)', () => {
  it.each([
    'com.example.app:/oauth2redirect',
    'com.example.app:/',
    'https://app.example.com/oauth/callback',
    'https://app.example.com/cb?tenant=1',
    'http://127.0.0.1/callback',
    'http://127.0.0.1:8080/callback',
    'http://[::1]/callback',
  ])('accepts %s', (uri) => {
    expect(redirectUriProblem(uri)).toBeUndefined();
  });

  it.each([
    ['a fragment', 'https://app.example.com/cb#x'],
    ['plain http off loopback', 'http://app.example.com/cb'],
    ['http on localhost (RFC 8252 s8.3)', 'http://localhost/cb'],
    ['http on another 127/8 address', 'http://127.0.0.2/cb'],
    ['a single-label private scheme', 'myapp:/cb'],
    ['a private scheme with an authority', 'com.example.app://host/cb'],
    ['javascript', 'javascript:alert(1)'],
    ['data', 'data:text/html,x'],
    ['user information', 'https://user:pass@app.example.com/cb'],
    ['a space', 'https://app.example.com/a b'],
    ['a relative path', '/cb'],
    ['an empty value', ''],
    ['over 2048 characters', `https://app.example.com/${'a'.repeat(2048)}`],
  ])('refuses %s', (_name, uri) => {
    expect(redirectUriProblem(uri)).toBeTypeOf('string');
  });
});

describe('isRegisteredRedirectUri: exact match, loopback on any port', () => {
  it('matches a custom scheme or https URI only exactly', () => {
    const registered = app('com.example.app:/oauth2redirect', 'https://app.example.com/cb');

    expect(isRegisteredRedirectUri(registered, 'com.example.app:/oauth2redirect')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'https://app.example.com/cb')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'com.example.app:/oauth2redirect/x')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'com.example.app:/OAUTH2REDIRECT')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'https://app.example.com/cb/')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'https://app.example.com:8443/cb')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'https://app.example.com/cb?x=1')).toBe(false);
  });

  it('matches a loopback URI on any port, and nothing else about it', () => {
    const registered = app('http://127.0.0.1/callback', 'http://[::1]:9000/cb');

    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1/callback')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:49152/callback')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:1/callback')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'http://[::1]/cb')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'http://[::1]:61000/cb')).toBe(true);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:49152/callback2')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:49152/')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:49152/callback?x')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://[::1]:49152/callback')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://localhost:49152/callback')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'https://127.0.0.1:49152/callback')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:99999/callback')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1:8080/callback#x')).toBe(false);
    expect(isRegisteredRedirectUri(registered, 'http://127.0.0.1@evil.example/callback')).toBe(
      false,
    );
  });

  it('gives https no port wildcard', () => {
    const registered = app('https://127.0.0.1/callback');

    expect(isRegisteredRedirectUri(registered, 'https://127.0.0.1:8443/callback')).toBe(false);
  });
});
