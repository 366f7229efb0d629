/**
 * API Gateway's own answers (throttled, function crashed or timed out, integration
 * timeout, too large) are part of what clients receive: `docs/openapi.yaml` documents them
 * on every operation, and the README's table names the same ones. The bodies are the ones
 * an HTTP API sends; no broker code can produce them, so they are built here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { openApiProblems } from '../support/openapi.ts';
import { repoRoot } from './synth.ts';

const GATEWAY_ANSWERS = {
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  413: 'Request Entity Too Large',
} as const;

/** An answer as API Gateway sends it: JSON `{"message"}`, no Cache-Control, no Retry-After. */
const gatewayAnswer = (status: keyof typeof GATEWAY_ANSWERS) =>
  new Response(JSON.stringify({ message: GATEWAY_ANSWERS[status] }), {
    status,
    headers: { 'content-type': 'application/json' },
  });

const document = parse(readFileSync(join(repoRoot, 'docs', 'openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, unknown>>;
};

/** Every operation of the document, the CORS preflights included. */
const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.keys(item).map((method) => ({ path, method: method.toUpperCase() })),
);

describe('API Gateway answers in docs/openapi.yaml', () => {
  it.each(operations)(
    '$method $path documents 429, 500 and 503 from API Gateway',
    async ({ path, method }) => {
      // Act
      const problems = await Promise.all(
        ([429, 500, 503] as const).map(async (status) => ({
          status,
          problems: await openApiProblems(method, path, gatewayAnswer(status)),
        })),
      );

      // Assess
      expect(problems).toEqual([
        { status: 429, problems: [] },
        { status: 500, problems: [] },
        { status: 503, problems: [] },
      ]);
    },
  );

  it.each([
    { method: 'POST', path: '/refresh' },
    { method: 'POST', path: '/logout' },
  ])(
    '$method $path documents the 413 of both API Gateway and the broker',
    async ({ method, path }) => {
      // Prepare
      const fromBroker = new Response(
        JSON.stringify({ error: 'invalid_request', error_description: 'The body is too large.' }),
        {
          status: 413,
          headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
        },
      );

      // Act
      const problems = [
        await openApiProblems(method, path, gatewayAnswer(413)),
        await openApiProblems(method, path, fromBroker),
      ];

      // Assess
      expect(problems).toEqual([[], []]);
    },
  );

  it('still refuses a body that is neither the broker error nor a gateway error', async () => {
    // Prepare
    const neither = new Response(JSON.stringify({ error: 'x' }), {
      status: 503,
      headers: { 'content-type': 'application/json' },
    });
    const brokerBodyOn429 = new Response(
      JSON.stringify({ error: 'temporarily_unavailable', error_description: 'x' }),
      { status: 429, headers: { 'content-type': 'application/json' } },
    );

    // Act
    const problems = [
      await openApiProblems('POST', '/refresh', neither),
      await openApiProblems('POST', '/refresh', brokerBodyOn429),
    ];

    // Assess
    expect(problems[0]?.join()).toContain('must match exactly one schema in oneOf');
    expect(problems[1]?.join()).toContain("must have required property 'message'");
  });

  it('matches the README table of answers from API Gateway', () => {
    // Prepare
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

    // Act
    const rows = [...readme.matchAll(/^\| `(\d{3}) \{"message":"([^"]+)"\}` \|/gm)].map(
      ([, status, message]) => [Number(status), message],
    );

    // Assess
    expect(rows).toEqual([
      [429, GATEWAY_ANSWERS[429]],
      [500, GATEWAY_ANSWERS[500]],
      [503, GATEWAY_ANSWERS[503]],
      [413, GATEWAY_ANSWERS[413]],
      [403, 'Forbidden'],
    ]);
  });
});
