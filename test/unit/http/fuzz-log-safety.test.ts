import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Log } from '../../../functions/broker/ports.ts';
import { createLogger } from '../../../functions/http/observability.ts';
import {
  InvalidClientError,
  InvalidGrantError,
  InvalidTokenResponseError,
  SalesforceUnavailableError,
} from '../../../functions/salesforce/errors.ts';
import {
  buildPorts,
  ENTRY_POINTS,
  eventArbitrary,
  materialise,
  prepareRun,
} from '../../support/fuzz-http.ts';

/**
 * The production logger (Powertools, one JSON object per line) under generated requests
 * and hostile Salesforce errors: every line parses, there is exactly one line per log
 * call (nothing a client or Salesforce sends can start a line of its own), and no line
 * carries a token, the client secret, a session handle, a login cookie, a state or a code.
 */
const RUNS = Math.max(50, Math.floor(Number(process.env.FUZZ_RUNS ?? 300) / 3));

/** Text from outside (a client, Salesforce) that tries to forge a log line. */
const FORGED = '\n{"level":"ERROR","message":"forged","alarm":true}\r\n';

let lines: string[];

beforeEach(() => {
  lines = [];
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return true;
    });
  }
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The production logger, counting the calls that reach its INFO threshold. */
function countedLogger(): { log: Log; calls: () => number } {
  const inner = createLogger('fuzz-log-safety');
  let calls = 0;
  const counted =
    (level: 'info' | 'warn' | 'error') =>
    (message: string, attributes?: Record<string, unknown>) => {
      calls++;
      inner[level](message, attributes);
    };
  return {
    log: {
      debug: inner.debug,
      info: counted('info'),
      warn: counted('warn'),
      error: counted('error'),
    },
    calls: () => calls,
  };
}

function outputLines(): string[] {
  return lines
    .join('')
    .split('\n')
    .filter((line) => line.length > 0);
}

describe('Production log lines', () => {
  it.each(ENTRY_POINTS.map((entry) => [entry.name, entry] as const))(
    'stay one parseable, secret-free line per entry under generated %s requests',
    async (_name, entry) => {
      await fc.assert(
        fc.asyncProperty(eventArbitrary(entry), async (generated) => {
          // Prepare
          lines = [];
          const { log, calls } = countedLogger();
          const ports = buildPorts(log);
          const secrets = await prepareRun(ports);
          const before = calls();
          lines = [];

          // Act
          await entry.build(ports)(materialise(generated, secrets));

          // Assert
          const output = outputLines();
          expect(output).toHaveLength(calls() - before);
          for (const line of output) expect(() => JSON.parse(line)).not.toThrow();
          const text = output.join('\n');
          for (const canary of [...secrets.canaries, ...ports.salesforce.issued, ...ports.minted]) {
            expect(text).not.toContain(canary);
          }
        }),
        { numRuns: RUNS },
      );
    },
  );

  it.each([
    [
      'invalid_grant',
      new InvalidGrantError('rejected', {
        error: 'invalid_grant',
        description: `expired${FORGED}`,
      }),
    ],
    [
      'invalid_client',
      new InvalidClientError('rejected', { error: `invalid_client${FORGED}`, description: FORGED }),
    ],
    [
      'an invalid response',
      new InvalidTokenResponseError(`"response" body "id"${FORGED}`, 'field'),
    ],
    ['an outage', new SalesforceUnavailableError(`HTTP 503${FORGED}`)],
  ])('keep Salesforce text on %s inside one escaped line', async (_name, failure) => {
    // Prepare: /refresh meets a Salesforce error whose text tries to forge a log line
    const { log, calls } = countedLogger();
    const ports = buildPorts(log);
    ports.salesforce.refreshTokenGrant = async () => {
      throw failure;
    };
    const secrets = await prepareRun(ports);
    const refresh = ENTRY_POINTS.find((entry) => entry.name === 'refresh');
    if (!refresh) throw new Error('no /refresh entry point');
    const before = calls();
    lines = [];

    // Act
    const response = await refresh.build(ports)(
      materialise(
        {
          method: 'POST',
          path: '/refresh',
          headers: { authorization: 'Bearer ⟨H⟩', 'x-request-note': FORGED },
          cookies: undefined,
          rawQueryString: '',
          body: undefined,
          isBase64Encoded: false,
          requestId: `request${FORGED}`,
          context: 'full',
        },
        secrets,
      ),
    );

    // Assert
    const output = outputLines();
    expect(response.statusCode).toBeGreaterThanOrEqual(401);
    expect(output.length).toBeGreaterThan(0);
    expect(output).toHaveLength(calls() - before);
    for (const line of output) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry.message).not.toBe('forged');
    }
    for (const canary of secrets.canaries) expect(output.join('\n')).not.toContain(canary);
  });
});
