import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkOneEvent,
  ENTRY_POINTS,
  type FuzzStats,
  fuzzProperty,
  TEMPLATES,
} from '../../support/fuzz-http.ts';

/**
 * Generated HTTP API v2 events against every entry point (in-memory ports): methods,
 * paths, duplicated / huge / CR-LF / non-ASCII headers, cookies, query strings, JSON,
 * form, binary and base64 bodies, Origin values, broken request contexts. Properties:
 * no 5xx and no rejection for client input, the contract's JSON error shape, no CR/LF in
 * response headers, no upstream call without valid credentials, no secret in any log
 * entry. `FUZZ_RUNS` sets the runs per entry point (default 300; the soak runs 10,000).
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = process.env.FUZZ_SEED === undefined ? {} : { seed: Number(process.env.FUZZ_SEED) };

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});

afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

describe('Entry points under generated HTTP API v2 events', () => {
  const stats: FuzzStats = {};

  it.each(ENTRY_POINTS.map((entry) => [entry.name, entry] as const))(
    '%s keeps the contract for any client input',
    async (_name, entry) => {
      // Act
      await fc.assert(fuzzProperty(entry, stats), { numRuns: RUNS, ...SEED });
      await new Promise((resolve) => setImmediate(resolve));

      // Assert: besides the per-event checks, no promise was left to reject unseen, and
      // the generator reached more than the first line of defence.
      expect(unhandled).toEqual([]);
      const statuses = Object.keys(stats[entry.name] ?? {});
      expect(statuses.length).toBeGreaterThan(2);
    },
  );
});

describe('The templates reach past the first line of defence', () => {
  it.each([
    ['/token', 'token', TEMPLATES.token.bodies[0], '', 200],
    ['/login', 'login', undefined, TEMPLATES.login.queries[4], 302],
  ] as const)(
    '%s: its first handoff template succeeds',
    async (path, name, body, query, status) => {
      // Prepare
      const entry = ENTRY_POINTS.find((candidate) => candidate.name === name);
      if (!entry) throw new Error(`no ${name} entry point`);

      // Act
      const result = await checkOneEvent(entry, {
        method: entry.template.method,
        path,
        headers: { ...entry.template.headers[0] },
        cookies: undefined,
        rawQueryString: query ?? '',
        body,
        isBase64Encoded: false,
        requestId: 'templates',
        context: 'full',
      });

      // Assert
      expect(result.status).toBe(status);
    },
  );
});
