import { describe, expect, it } from 'vitest';
import {
  InvalidRequestError,
  UpstreamMisconfiguredError,
} from '../../../functions/broker/errors.ts';
import { chooseUpstream, upstreamOf } from '../../../functions/broker/orgs.ts';
import type { ClientCredentialsSource, SalesforceApp } from '../../../functions/broker/ports.ts';

function credentials(clientId: string): ClientCredentialsSource {
  const value = { clientId, clientSecret: `${clientId}-secret` };
  return { get: async () => value, reload: async () => value };
}

const production: SalesforceApp = {
  name: 'production',
  credentials: credentials('prod'),
  loginUrl: new URL('https://login.salesforce.com'),
  scopes: 'api refresh_token',
};
const sandbox: SalesforceApp = {
  name: 'sandbox',
  credentials: credentials('sbx'),
  loginUrl: new URL('https://test.salesforce.com'),
  scopes: 'api refresh_token web',
};
const deps = {
  apps: [production, sandbox],
  credentials: production.credentials,
  config: { loginHosts: ['*.my.salesforce.com'] },
};

describe('Function: upstreamOf', () => {
  it('gives an older record (no app, no host) the first app at its configured host', () => {
    // Act
    const upstream = upstreamOf(deps, {});

    // Assert
    expect(upstream).toMatchObject({
      appName: 'production',
      credentials: production.credentials,
      loginHost: 'login.salesforce.com',
    });
    expect(upstream.loginUrl?.origin).toBe('https://login.salesforce.com');
  });

  it('gives a stored connection its app and its login host', () => {
    // Act
    const upstream = upstreamOf(deps, {
      salesforceApp: 'sandbox',
      loginHost: 'acme--dev.sandbox.my.salesforce.com',
    });

    // Assert
    expect(upstream.credentials).toBe(sandbox.credentials);
    expect(upstream.loginUrl?.origin).toBe('https://acme--dev.sandbox.my.salesforce.com');
    expect(upstream.scopes).toBe('api refresh_token web');
  });

  it('answers upstream_misconfigured for a connection whose app was removed', () => {
    // Act + Assert
    expect(() => upstreamOf(deps, { salesforceApp: 'retired' })).toThrow(
      UpstreamMisconfiguredError,
    );
  });
});

describe('Function: chooseUpstream', () => {
  it('accepts a listed host and each app’s own host, in canonical form', () => {
    // Act
    const myDomain = chooseUpstream(deps, { loginHost: 'ACME.my.salesforce.com' });
    const appHost = chooseUpstream(deps, { loginHost: 'test.salesforce.com' });
    const byApp = chooseUpstream(deps, { salesforceApp: 'sandbox' });

    // Assert
    expect(myDomain.loginHost).toBe('acme.my.salesforce.com');
    expect(appHost.loginHost).toBe('test.salesforce.com');
    expect(byApp).toMatchObject({ appName: 'sandbox', loginHost: 'test.salesforce.com' });
  });

  it.each([
    { loginHost: 'evil-my.salesforce.com' },
    { loginHost: 'acme.my.site.com' },
    { loginHost: 'acme.my.salesforce.com:444' },
    { salesforceApp: 'staging' },
  ])('refuses %j with invalid_request', (request) => {
    // Act + Assert
    expect(() => chooseUpstream(deps, request)).toThrow(InvalidRequestError);
  });
});
