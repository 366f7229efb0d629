import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  AccessRestrictedError,
  InvalidClientError,
  InvalidGrantError,
  InvalidTokenResponseError,
  OAuthRequestError,
  SalesforceUnavailableError,
  TokenRequestInProgressError,
} from '../../../functions/salesforce/errors.ts';
import {
  isTrustedSalesforceUrl,
  processIntrospectionResponse,
  processTokenResponse,
  SalesforceOAuthClient,
} from '../../../functions/salesforce/oauth-client.ts';

const SECRET = 'client-secret';
const LOGIN = new URL('https://login.salesforce.com');
const ID = 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS';

function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const issuedAt = '1676372418560';
  return {
    access_token: '00Dxx!AQ.access',
    refresh_token: '5Aep861.refresh',
    signature: createHmac('sha256', SECRET)
      .update(ID + issuedAt)
      .digest('base64'),
    scope: 'refresh_token api',
    instance_url: 'https://acme.my.salesforce.com',
    id: ID,
    token_type: 'Bearer',
    issued_at: issuedAt,
    ...overrides,
  };
}

function respond(status: number, payload: unknown, headers: Record<string, string> = {}): Response {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  return new Response(text, {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

const options = { clientSecret: SECRET, loginUrl: LOGIN, requireRefreshToken: false };

describe('Function: processTokenResponse', () => {
  it('accepts a Salesforce response and parses the identity URL', async () => {
    const result = await processTokenResponse(
      respond(200, body({ sfdc_community_url: 'x' })),
      options,
    );

    expect(result).toMatchObject({
      accessToken: '00Dxx!AQ.access',
      refreshToken: '5Aep861.refresh',
      instanceUrl: 'https://acme.my.salesforce.com',
      issuedAt: '1676372418560',
      orgId: '00Dxx0000001gPLEAY',
      userId: '005xx000001Sv6AAAS',
    });
  });

  it.each(['access_token', 'instance_url', 'id', 'issued_at', 'signature', 'token_type'])(
    'names the missing field "%s"',
    async (field) => {
      const payload = body();
      delete payload[field];

      const error = await processTokenResponse(respond(200, payload), options).catch((e) => e);

      expect(error).toBeInstanceOf(InvalidTokenResponseError);
      expect(error.message).toContain(`"${field}"`);
    },
  );

  it('rejects a signature made with another secret', async () => {
    const error = await processTokenResponse(
      respond(200, body({ signature: createHmac('sha256', 'other').update('x').digest('base64') })),
      options,
    ).catch((e) => e);

    expect(error).toMatchObject({ reason: 'signature' });
  });

  it('rejects issued_at in seconds', async () => {
    const error = await processTokenResponse(
      respond(200, body({ issued_at: '1676372418' })),
      options,
    ).catch((e) => e);

    expect(error).toBeInstanceOf(InvalidTokenResponseError);
    expect(error.message).toContain('"issued_at"');
  });

  it('rejects a foreign instance_url', async () => {
    const error = await processTokenResponse(
      respond(200, body({ instance_url: 'https://salesforce.com.evil.example' })),
      options,
    ).catch((e) => e);

    expect(error).toMatchObject({ reason: 'instance_url' });
  });

  it('asks for the refresh_token scope when a code exchange returns no refresh token', async () => {
    const payload = body();
    delete payload.refresh_token;

    const error = await processTokenResponse(respond(200, payload), {
      ...options,
      requireRefreshToken: true,
    }).catch((e) => e);

    expect(error).toMatchObject({ reason: 'refresh_token_missing' });
    expect(error.message).toContain('refresh_token');
  });

  it.each([
    ['expired access/refresh token', InvalidGrantError],
    ['token validity expired', InvalidGrantError],
    ['authentication failure', InvalidGrantError],
    ['inactive user', InvalidGrantError],
    ['inactive organization', InvalidGrantError],
    ['expired authorization code', InvalidGrantError],
    ['invalid code verifier', InvalidGrantError],
    ['token request is already being processed', TokenRequestInProgressError],
    ['ip restricted', AccessRestrictedError],
    ['invalid login hours', AccessRestrictedError],
  ])('classifies invalid_grant "%s"', async (description, type) => {
    const error = await processTokenResponse(
      respond(400, { error: 'invalid_grant', error_description: description }),
      options,
    ).catch((e) => e);

    expect(error).toBeInstanceOf(type);
    expect(error.upstreamDescription).toBe(description);
  });

  it.each([
    'invalid_client',
    'invalid_client_id',
    'invalid_client_credentials',
    'unauthorized_client',
  ])('classifies %s as a client error', async (code) => {
    const error = await processTokenResponse(respond(400, { error: code }), options).catch(
      (e) => e,
    );

    expect(error).toBeInstanceOf(InvalidClientError);
  });

  it('treats an HTML maintenance page as unavailable', async () => {
    const error = await processTokenResponse(
      new Response('<html>Down for maintenance</html>', { status: 503 }),
      options,
    ).catch((e) => e);

    expect(error).toBeInstanceOf(SalesforceUnavailableError);
  });

  it.each(['unsupported_grant_type', 'invalid_request', 'redirect_uri_mismatch'])(
    'classifies %s as a request (configuration) error',
    async (code) => {
      const error = await processTokenResponse(respond(400, { error: code }), options).catch(
        (e) => e,
      );

      expect(error).toBeInstanceOf(OAuthRequestError);
    },
  );

  it.each([
    ['a 400 rate_limit_exceeded', respond(400, { error: 'rate_limit_exceeded' }), 60],
    [
      'an invalid_grant that says too many requests',
      respond(400, { error: 'invalid_grant', error_description: 'Too many requests' }),
      60,
    ],
    ['a 429 without a body', new Response('', { status: 429 }), 60],
    [
      'an HTML "Too Many Requests" page',
      new Response('<html><h1>Too Many Requests</h1></html>', { status: 403 }),
      60,
    ],
    ['a 429 with Retry-After', respond(429, { error: 'x' }, { 'retry-after': '7' }), 7],
  ])(
    'classifies %s as rate-limited, never as a dead grant or a bad client',
    async (_why, response, retry) => {
      const error = await processTokenResponse(response, options).catch((e) => e);

      expect(error).toBeInstanceOf(SalesforceUnavailableError);
      expect(error).toMatchObject({ reason: 'rate_limited', retryAfterSeconds: retry });
      expect(error.outcomeUnknown).toBe(false);
    },
  );

  it('passes on Retry-After from a 429', async () => {
    const error = await processTokenResponse(
      respond(429, { error: 'rate_limited' }, { 'retry-after': '17' }),
      options,
    ).catch((e) => e);

    expect(error).toMatchObject({ retryAfterSeconds: 17 });
  });
});

describe('Function: isTrustedSalesforceUrl', () => {
  it.each([
    ['https://acme.my.salesforce.com', LOGIN, true],
    ['https://acme--dev.sandbox.my.salesforce.com', LOGIN, true],
    ['https://na1.force.com', LOGIN, true],
    ['http://acme.my.salesforce.com', LOGIN, false],
    ['https://evilsalesforce.com', LOGIN, false],
    ['https://acme.my.salesforce.com:8443', LOGIN, false],
    ['http://127.0.0.1:5000', LOGIN, false],
    ['http://127.0.0.1:5000', new URL('http://127.0.0.1:4000'), true],
  ])('%s with login %s -> %s', (value, login, expected) => {
    expect(isTrustedSalesforceUrl(value, login)).toBe(expected);
  });
});

describe('Class: SalesforceOAuthClient', () => {
  it('aborts a request that outlives its timeout', async () => {
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 20,
      fetch: (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener('abort', () => reject(init.signal?.reason));
        }),
    });

    const error = await client
      .refreshTokenGrant({ clientId: 'id', clientSecret: SECRET }, 'refresh')
      .catch((e) => e);

    expect(error).toBeInstanceOf(SalesforceUnavailableError);
    expect(error.message).toContain('20 ms');
    expect(error).toMatchObject({ reason: 'timeout', outcomeUnknown: true });
  });

  it('posts the refresh grant form with the client credentials', async () => {
    let sent: URLSearchParams | undefined;
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 1000,
      fetch: async (_input, init) => {
        sent = new URLSearchParams(String(init?.body));
        return respond(200, body());
      },
    });

    await client.refreshTokenGrant({ clientId: 'id', clientSecret: SECRET }, 'the-refresh-token');

    expect(Object.fromEntries(sent ?? [])).toMatchObject({
      grant_type: 'refresh_token',
      refresh_token: 'the-refresh-token',
      client_id: 'id',
      client_secret: SECRET,
    });
  });

  it('counts invalid_token on revoke as already revoked', async () => {
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 1000,
      fetch: async () => respond(400, { error: 'invalid_token' }),
    });

    await expect(client.revoke('gone')).resolves.toBeUndefined();
  });

  it('counts unsupported_token_type on revoke as already revoked', async () => {
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 1000,
      fetch: async () => respond(400, { error: 'unsupported_token_type' }),
    });

    await expect(client.revoke('gone')).resolves.toBeUndefined();
  });

  it('reports a revoke 503 as unavailable', async () => {
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 1000,
      fetch: async () => new Response('<html>maintenance</html>', { status: 503 }),
    });

    await expect(client.revoke('t')).rejects.toBeInstanceOf(SalesforceUnavailableError);
  });

  it('tells a timeout or a broken connection (outcome unknown) from a refused one', async () => {
    const refused = Object.assign(new TypeError('fetch failed'), {
      cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    });
    const reset = Object.assign(new TypeError('fetch failed'), {
      cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
    });
    const failing = (error: Error) =>
      new SalesforceOAuthClient({
        loginUrl: LOGIN,
        timeoutMs: 1000,
        fetch: async () => Promise.reject(error),
      });
    const credentials = { clientId: 'id', clientSecret: SECRET };

    const notSent = await failing(refused)
      .refreshTokenGrant(credentials, 'r')
      .catch((e) => e);
    const maybeSent = await failing(reset)
      .refreshTokenGrant(credentials, 'r')
      .catch((e) => e);

    expect(notSent).toMatchObject({ reason: 'unreachable', outcomeUnknown: false });
    expect(maybeSent).toMatchObject({ reason: 'network', outcomeUnknown: true });
  });
});

describe('Login hosts and Experience Cloud sites', () => {
  /** A body whose `id` is on `idHost`, signed for it. */
  function bodyWithId(idUrl: string, overrides: Record<string, unknown> = {}) {
    const issuedAt = '1676372418560';
    return body({
      id: idUrl,
      signature: createHmac('sha256', SECRET)
        .update(idUrl + issuedAt)
        .digest('base64'),
      ...overrides,
    });
  }

  it('accepts an id URL on the login host itself (an Experience Cloud site)', async () => {
    // Prepare
    const site = new URL('https://acme.my.site.com');
    const id = 'https://acme.my.site.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS';

    // Act
    const result = await processTokenResponse(respond(200, bodyWithId(id)), {
      ...options,
      loginUrl: site,
    });

    // Assert
    expect(result.id).toBe(id);
  });

  it('refuses an id URL on another custom host than the login host', async () => {
    // Prepare
    const id = 'https://login.acme.example/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS';

    // Act
    const attempt = processTokenResponse(respond(200, bodyWithId(id)), {
      ...options,
      loginUrl: new URL('https://other.acme.example'),
    });

    // Assert
    await expect(attempt).rejects.toMatchObject({ reason: 'identity_url' });
  });

  it('passes sfdc_site_url (else sfdc_community_url) on as siteUrl, when it is a Salesforce site', async () => {
    // Act
    const site = await processTokenResponse(
      respond(
        200,
        body({
          sfdc_site_url: 'https://acme.my.site.com/partners',
          sfdc_community_url: 'https://acme.my.site.com/old',
        }),
      ),
      options,
    );
    const community = await processTokenResponse(
      respond(200, body({ sfdc_community_url: 'https://acme.my.site.com/old' })),
      options,
    );
    const foreign = await processTokenResponse(
      respond(200, body({ sfdc_site_url: 'https://evil.example/phish' })),
      options,
    );

    // Assert
    expect(site.siteUrl).toBe('https://acme.my.site.com/partners');
    expect(community.siteUrl).toBe('https://acme.my.site.com/old');
    expect(foreign.siteUrl).toBeUndefined();
  });

  it('sends each call to the login host it is given, and the configured one otherwise', async () => {
    // Prepare
    const urls: string[] = [];
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 1000,
      fetch: async (input) => {
        urls.push(String(input));
        return respond(200, body());
      },
    });
    const myDomain = new URL('https://acme.my.salesforce.com');

    // Act
    await client.refreshTokenGrant({ clientId: 'id', clientSecret: SECRET }, 'rt', {
      loginUrl: myDomain,
    });
    await client.revoke('rt', { loginUrl: myDomain });
    await client.refreshTokenGrant({ clientId: 'id', clientSecret: SECRET }, 'rt');
    const authorize = client.authorizationUrl({
      clientId: 'id',
      redirectUri: 'https://broker.example.com/callback',
      scope: 'api refresh_token',
      state: 's',
      codeChallenge: 'c',
      loginUrl: myDomain,
    });

    // Assert
    expect(urls).toEqual([
      'https://acme.my.salesforce.com/services/oauth2/token',
      'https://acme.my.salesforce.com/services/oauth2/revoke',
      'https://login.salesforce.com/services/oauth2/token',
    ]);
    expect(authorize.origin).toBe('https://acme.my.salesforce.com');
  });
});

describe('Function: processIntrospectionResponse', () => {
  const active = {
    active: true,
    scope: 'api refresh_token',
    client_id: 'client',
    username: 'user@example.com',
    sub: ID,
    token_type: 'access_token',
    exp: 1_676_379_618,
    iat: 1_676_372_418,
    nbf: 1_676_372_418,
  };

  it('gives the expiry of an active access token in epoch ms', async () => {
    expect(await processIntrospectionResponse(respond(200, active))).toEqual({
      active: true,
      expiresAt: 1_676_379_618_000,
    });
  });

  it('accepts exp as a numeric string and ignores unknown fields', async () => {
    const answer = await processIntrospectionResponse(
      respond(200, { ...active, exp: '1676379618', extra: 1 }),
    );
    expect(answer).toEqual({ active: true, expiresAt: 1_676_379_618_000 });
  });

  it('says inactive for {"active":false}, with no other field needed', async () => {
    expect(await processIntrospectionResponse(respond(200, { active: false }))).toEqual({
      active: false,
    });
  });

  it.each<[string, unknown, string]>([
    ['not an object', [1], '"introspection" body must be a JSON object'],
    ['active missing', { exp: 1 }, '"active" property must be a boolean'],
    ['active as text', { active: 'true', exp: 1 }, '"active" property must be a boolean'],
    ['exp missing', { active: true }, '"exp" property must be a positive whole number'],
    ['exp fractional', { active: true, exp: 1.5 }, '"exp" property must be a positive'],
    ['exp zero', { active: true, exp: 0 }, '"exp" property must be a positive'],
    [
      'exp in milliseconds',
      { active: true, exp: 1_676_379_618_000 },
      '"exp" property must be seconds since the epoch, not milliseconds',
    ],
    [
      'exp as 13 digits of text',
      { active: true, exp: '1676379618000' },
      '"exp" property must be a positive whole number',
    ],
    ['iat as text', { active: true, exp: 2, iat: 'x' }, '"iat" property must be a positive'],
    ['iat after exp', { active: true, exp: 2, iat: 3 }, '"iat" property must not be after "exp"'],
    [
      'a refresh token introspected',
      { active: true, exp: 1, token_type: 'refresh_token' },
      '"token_type" property must be "access_token"',
    ],
  ])('refuses a body with %s, naming the field', async (_why, payload, message) => {
    const error = await processIntrospectionResponse(respond(200, payload)).catch((e) => e);
    expect(error).toBeInstanceOf(InvalidTokenResponseError);
    expect((error as Error).message).toContain(message);
  });

  it('sorts error answers as the token endpoint does', async () => {
    const unavailable = await processIntrospectionResponse(respond(503, 'down')).catch((e) => e);
    const client = await processIntrospectionResponse(
      respond(400, { error: 'invalid_client', error_description: 'invalid client credentials' }),
    ).catch((e) => e);
    const html = await processIntrospectionResponse(respond(200, '<html>')).catch((e) => e);

    expect(unavailable).toBeInstanceOf(SalesforceUnavailableError);
    expect(client).toBeInstanceOf(InvalidClientError);
    expect(html).toBeInstanceOf(SalesforceUnavailableError);
  });
});

describe('Method: SalesforceOAuthClient.introspect', () => {
  it('posts the token, the hint and the client credentials to the login host', async () => {
    // Prepare
    const sent: { url: string; body: URLSearchParams }[] = [];
    const client = new SalesforceOAuthClient({
      loginUrl: LOGIN,
      timeoutMs: 5_000,
      fetch: async (input, init) => {
        sent.push({ url: String(input), body: new URLSearchParams(String(init?.body)) });
        return respond(200, { active: true, exp: 2_000_000_000 });
      },
    });

    // Act
    const answer = await client.introspect(
      { clientId: 'client', clientSecret: SECRET },
      '00Dxx!AQ.access',
      { loginUrl: new URL('https://acme.my.salesforce.com') },
    );

    // Assert
    expect(answer).toEqual({ active: true, expiresAt: 2_000_000_000_000 });
    expect(sent[0]?.url).toBe('https://acme.my.salesforce.com/services/oauth2/introspect');
    expect(Object.fromEntries(sent[0]?.body ?? [])).toEqual({
      token: '00Dxx!AQ.access',
      token_type_hint: 'access_token',
      client_id: 'client',
      client_secret: SECRET,
    });
  });
});
