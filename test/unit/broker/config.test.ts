import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../functions/broker/config.ts';

const BASE = {
  TABLE_NAME: 'sessions',
  KMS_KEY_ID: 'alias/token-broker',
  CLIENT_SECRET_ID: 'token-broker/salesforce',
  SALESFORCE_LOGIN_URL: 'https://login.salesforce.com',
};

describe('Function: loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig(BASE);

    expect(config).toMatchObject({
      scopes: 'api refresh_token',
      returnToPrefixes: ['/'],
      allowedOrigins: [],
      reuseWindowMs: 5000,
      sessionAbsoluteTtlMs: 30 * 86_400_000,
      sessionIdleTtlMs: 7 * 86_400_000,
      clientApps: [],
    });
    expect(config.upstreamTimeoutMs).toBeLessThan(config.leaseMs);
  });

  it("always allows the broker's own origin (that of CALLBACK_URL), once", () => {
    const callback = { CALLBACK_URL: 'https://auth.example.com/callback' };

    const alone = loadConfig({ ...BASE, ...callback });
    const listed = loadConfig({
      ...BASE,
      ...callback,
      ALLOWED_ORIGINS: 'https://app.example.com,https://auth.example.com',
    });

    expect(alone.allowedOrigins).toEqual(['https://auth.example.com']);
    expect(listed.allowedOrigins).toEqual(['https://app.example.com', 'https://auth.example.com']);
  });

  it.each([
    [{ TABLE_NAME: '' }, 'TABLE_NAME'],
    [{ SALESFORCE_LOGIN_URL: 'login.salesforce.com' }, 'SALESFORCE_LOGIN_URL'],
    [{ SALESFORCE_LOGIN_URL: 'http://login.salesforce.com' }, 'SALESFORCE_LOGIN_URL'],
    [{ REUSE_WINDOW_SECONDS: 'five' }, 'REUSE_WINDOW_SECONDS'],
    [{ ALLOWED_ORIGINS: 'https://app.example.com/' }, 'ALLOWED_ORIGINS'],
    [{ RETURN_TO_PREFIXES: '//evil' }, 'RETURN_TO_PREFIXES'],
    [{ UPSTREAM_TIMEOUT_MS: '20000', LEASE_MS: '12000' }, 'UPSTREAM_TIMEOUT_MS'],
    [{ CLIENT_APPS: '[{"client_id":"a","redirect_uris":["http://localhost/cb"]}]' }, 'CLIENT_APPS'],
    [{ CLIENT_APPS: 'ios' }, 'CLIENT_APPS'],
  ])('names the variable in %j', (override, variable) => {
    const error = (() => {
      try {
        loadConfig({ ...BASE, ...override });
      } catch (e) {
        return e;
      }
      return undefined;
    })();

    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as Error).message).toContain(variable);
  });

  it('accepts plain http only on loopback', () => {
    expect(
      loadConfig({ ...BASE, SALESFORCE_LOGIN_URL: 'http://127.0.0.1:4000' }).salesforceLoginUrl
        .host,
    ).toBe('127.0.0.1:4000');
  });
});
