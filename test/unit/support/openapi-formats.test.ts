import { describe, expect, it } from 'vitest';
import { FORMATS, openApiProblems } from '../../support/openapi.ts';

function refreshAnswer(instanceUrl: string): Response {
  const body = {
    access_token: '00Dxx!token',
    instance_url: instanceUrl,
    token_type: 'Bearer',
    issued_at: '1767225600000',
    version: 2,
  };
  return new Response(JSON.stringify(body), {
    status: 200,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

describe('The OpenAPI response checker', () => {
  it.each(['https://example.my.salesforce.com', 'http://127.0.0.1:41234'])(
    'accepts the uri %s',
    (value) => {
      expect(FORMATS.uri?.(value)).toBe(true);
    },
  );

  it.each(['example.my.salesforce.com', '/services/data', 'https://exa mple.com', ''])(
    'rejects %j as a uri',
    (value) => {
      expect(FORMATS.uri?.(value)).toBe(false);
    },
  );

  it('checks the format of instance_url in a /refresh answer', async () => {
    // Act
    const good = await openApiProblems(
      'POST',
      '/refresh',
      refreshAnswer('https://na1.example.com'),
    );
    const bad = await openApiProblems('POST', '/refresh', refreshAnswer('na1.example.com'));

    // Assert
    expect(good).toEqual([]);
    expect(bad.join()).toMatch(/instance_url.*must match format "uri"/);
  });
});
