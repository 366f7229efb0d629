/**
 * Refresh-path benchmark (`npm run bench`), side by side in one run against the same fake
 * Salesforce with rotation and reuse detection on:
 *  (a) N parallel refreshes of one session, through the broker vs the naive way;
 *  (b) AWS calls per `/refresh`, counted at dynalite and the emulators;
 *  (c) p50/p99 latency of `/refresh` vs one direct call to the fake token endpoint;
 *  (d) p50/p99 latency of an upstream `/refresh` with introspection on vs off, alternating.
 */
import { performance } from 'node:perf_hooks';
import { readJson, startBrokerHarness } from '../test/support/broker-harness.ts';

const SALESFORCE = {
  rotation: true,
  reuseDetection: true,
  concurrencyBlock: true,
  tokenLatencyMs: 20,
  // Introspection is another call to the same servers: as slow as a token request.
  introspectLatencyMs: 20,
};

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function table(header: string[], rows: Array<Array<string | number>>): string {
  const lines = [header, header.map(() => '---'), ...rows.map((row) => row.map(String))];
  return lines.map((line) => `| ${line.join(' | ')} |`).join('\n');
}

export async function benchRefresh(): Promise<string> {
  const out: string[] = [];
  const broker = await startBrokerHarness({ salesforce: SALESFORCE });
  const fake = broker.stack.salesforce;
  if (!fake) throw new Error('no fake Salesforce');
  try {
    // (a) thundering herd: broker vs naive clients
    const herdRows: Array<Array<string | number>> = [];
    for (const n of [10, 100]) {
      const session = await broker.seedSession();
      fake.resetCalls();
      const responses = await Promise.all(
        Array.from({ length: n }, () => broker.refresh(session.handle)),
      );
      const brokerCalls = fake.calls.tokenRefresh;
      const brokerOk = responses.filter((r) => r.status === 200).length;
      await Promise.all(responses.map((r) => r.body?.cancel()));
      const stored = await broker.stored(session.handle);
      const brokerLoggedOut =
        stored && fake.isRefreshTokenActive(stored.tokens.refreshToken) ? 0 : 1;
      herdRows.push(['broker', n, brokerCalls, brokerOk, brokerLoggedOut]);

      const grant = fake.seedGrant({ userId: `005${String(n).padStart(15, '0')}` });
      fake.resetCalls();
      const naive = await Promise.all(
        Array.from({ length: n }, () =>
          fetch(`${fake.url}/services/oauth2/token`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({
              grant_type: 'refresh_token',
              refresh_token: grant.refreshToken,
              client_id: 'fake-client-id',
              client_secret: 'fake-client-secret',
            }),
          }).then(async (r) => ({
            status: r.status,
            body: (await r.json()) as Record<string, string>,
          })),
        ),
      );
      const naiveOk = naive.filter((r) => r.status === 200);
      // The session survives only if some caller holds a refresh token that still works.
      const survivors = naiveOk.filter(
        (r) => r.body.refresh_token && fake.isRefreshTokenActive(r.body.refresh_token),
      ).length;
      herdRows.push([
        'naive (each caller refreshes)',
        n,
        fake.calls.tokenRefresh,
        naiveOk.length,
        survivors > 0 ? 0 : 1,
      ]);
    }
    out.push('### (a) N parallel refreshes of one session (rotation + reuse detection on)');
    out.push(
      table(['who', 'N', 'token-endpoint calls', '200 answers', 'sessions logged out'], herdRows),
    );

    // (b) AWS calls per /refresh
    const snapshot = () => ({
      dynamodb: { ...broker.stack.dynamodbCalls },
      kms: { ...broker.stack.kms.calls },
      secrets: { ...broker.stack.secretsManager.calls },
    });
    const diff = (before: ReturnType<typeof snapshot>, after: ReturnType<typeof snapshot>) => {
      const sum = (a: Record<string, number>, b: Record<string, number>) =>
        Object.entries(b)
          .map(([k, v]) => [k, v - (a[k] ?? 0)] as const)
          .filter(([, v]) => v > 0)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || '0';
      return [
        sum(before.dynamodb, after.dynamodb),
        sum(before.kms, after.kms),
        sum(before.secrets, after.secrets),
      ];
    };
    const awsRows: Array<Array<string | number>> = [];
    {
      const session = await broker.seedSession();
      const before = snapshot();
      const response = await broker.refresh(session.handle);
      await response.body?.cancel();
      awsRows.push(['refresh (holder, warm secret cache)', ...diff(before, snapshot())]);
      const reuseBefore = snapshot();
      const reused = await broker.refresh(session.handle);
      await reused.body?.cancel();
      awsRows.push(['reuse window (no upstream)', ...diff(reuseBefore, snapshot())]);
    }
    {
      const session = await broker.seedSession();
      const before = snapshot();
      const responses = await Promise.all(
        Array.from({ length: 10 }, () => broker.refresh(session.handle)),
      );
      await Promise.all(responses.map((r) => r.body?.cancel()));
      awsRows.push([
        '10 parallel callers, total (1 holder + 9 coalesced)',
        ...diff(before, snapshot()),
      ]);
    }
    out.push('### (b) AWS calls per /refresh, counted at dynalite and the emulators');
    out.push(table(['path', 'DynamoDB', 'KMS', 'Secrets Manager'], awsRows));

    // (c) latency, measured side by side
    const rounds = 200;
    const session = await broker.seedSession();
    let version = 1;
    const brokerMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      const response = await broker.refresh(session.handle, { version });
      const body = await readJson(response);
      brokerMs.push(performance.now() - started);
      version = body.version;
    }
    const grant = fake.seedGrant({ userId: '005LATENCY00000000' });
    let refreshToken = grant.refreshToken;
    const directMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      const response = await fetch(`${fake.url}/services/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: refreshToken,
          client_id: 'fake-client-id',
          client_secret: 'fake-client-secret',
        }),
      });
      const body = (await response.json()) as Record<string, string>;
      directMs.push(performance.now() - started);
      refreshToken = body.refresh_token ?? refreshToken;
    }
    const reuseMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      const response = await broker.refresh(session.handle, { version: version - 1 });
      await response.body?.cancel();
      reuseMs.push(performance.now() - started);
    }
    // Introspection on and off, call by call on one broker, so both see the same machine.
    const withIntrospection: number[] = [];
    const withoutIntrospection: number[] = [];
    const config = broker.runtime.config as { introspection: boolean };
    for (let i = 0; i < 2 * rounds; i++) {
      const on = i % 2 === 0;
      config.introspection = on;
      const started = performance.now();
      const response = await broker.refresh(session.handle, { version });
      const body = await readJson(response);
      (on ? withIntrospection : withoutIntrospection).push(performance.now() - started);
      version = body.version;
    }
    config.introspection = true;
    const p = (samples: number[], q: number) => percentile(samples, q).toFixed(1);
    const ratio = (samples: number[], q: number) =>
      (percentile(samples, q) / percentile(directMs, q)).toFixed(2);
    out.push(
      `### (c) latency over ${rounds} sequential calls each (fake token endpoint latency ${SALESFORCE.tokenLatencyMs} ms)`,
    );
    out.push(
      table(
        ['call', 'p50 ms', 'p99 ms', 'p50 ratio to direct', 'p99 ratio to direct'],
        [
          [
            'direct POST to the fake token endpoint',
            p(directMs, 50),
            p(directMs, 99),
            '1.00',
            '1.00',
          ],
          [
            'broker /refresh (upstream refresh)',
            p(brokerMs, 50),
            p(brokerMs, 99),
            ratio(brokerMs, 50),
            ratio(brokerMs, 99),
          ],
          [
            'broker /refresh (stored token, no upstream)',
            p(reuseMs, 50),
            p(reuseMs, 99),
            ratio(reuseMs, 50),
            ratio(reuseMs, 99),
          ],
        ],
      ),
    );
    const against = (samples: number[], q: number) =>
      (percentile(samples, q) / percentile(withoutIntrospection, q)).toFixed(2);
    out.push(
      `### (d) the cost of introspection (README "Access token expiry"): ${rounds} upstream refreshes each, alternating, fake introspection latency ${SALESFORCE.introspectLatencyMs} ms`,
    );
    out.push(
      table(
        ['broker /refresh (upstream refresh)', 'p50 ms', 'p99 ms', 'p50 ratio', 'p99 ratio'],
        [
          [
            'introspection off',
            p(withoutIntrospection, 50),
            p(withoutIntrospection, 99),
            '1.00',
            '1.00',
          ],
          [
            'introspection on (beside the commit)',
            p(withIntrospection, 50),
            p(withIntrospection, 99),
            against(withIntrospection, 50),
            against(withIntrospection, 99),
          ],
        ],
      ),
    );
  } finally {
    await broker.close();
  }
  return out.join('\n\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchRefresh());
}
