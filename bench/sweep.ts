/**
 * The sweep's cost (README "Keep-alive and expiry"): a table of 10,000 connections of which
 * 1,000 are due (700 for keep-alive, 300 past their idle expiry), swept in one run against
 * dynalite (through the fault proxy, which counts DynamoDB requests), the KMS emulator
 * (which counts its calls) and the fake Salesforce. Reported per 1,000 connections swept:
 * requests by kind, and time: at the default rate on a clock that moves only when the
 * sweep paces itself (what a deployed run takes), and the wall time of the same work
 * unpaced (what the sweep itself costs on this machine).
 */
import { performance } from 'node:perf_hooks';
import type { Log } from '../functions/broker/ports.ts';
import { runSweep } from '../functions/broker/sweep.ts';
import { type BrokerHarness, startBrokerHarness } from '../test/support/broker-harness.ts';
import {
  seedExpired,
  seedFiller,
  seedKeepAliveDue,
  steppedTime,
  sweepDependencies,
} from '../test/support/sweep-world.ts';

const FILLER = 9_000;
const KEEP_ALIVE_DUE = 700;
const EXPIRED = 300;
const DUE = KEEP_ALIVE_DUE + EXPIRED;
/** `keepAliveRatePerSecond`'s default. */
const DEFAULT_RATE = 10;
const READS = new Set(['GetItem', 'Query', 'Scan', 'BatchGetItem']);
/** The run's one summary line would only interleave with the tables. */
const quiet: Log = { debug() {}, info() {}, warn() {}, error() {} };

function table(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

interface Counts {
  dynamodb: Record<string, number>;
  kms: Record<string, number>;
}

function snapshot(broker: BrokerHarness): Counts {
  return {
    dynamodb: { ...(broker.stack.dynamodbFaults?.calls ?? {}) },
    kms: { ...broker.stack.kms.calls },
  };
}

function delta(before: Record<string, number>, after: Record<string, number>) {
  return Object.fromEntries(
    Object.entries(after)
      .map(([name, count]) => [name, count - (before[name] ?? 0)] as const)
      .filter(([, count]) => count !== 0),
  );
}

async function seed(broker: BrokerHarness, now: number): Promise<void> {
  await seedFiller(broker, FILLER, now);
  for (let index = 0; index < KEEP_ALIVE_DUE; index++) await seedKeepAliveDue(broker);
  for (let index = 0; index < EXPIRED; index++) await seedExpired(broker, now);
}

/** One run over a freshly seeded table: its counts, its clock time and its wall time. */
async function sweepOnce(ratePerSecond: number) {
  const broker = await startBrokerHarness({
    dynamodbFaultProxy: true,
    env: {
      LEASE_MS: '12000',
      UPSTREAM_TIMEOUT_MS: '8000',
      WAIT_BUDGET_MS: '10000',
      KEEP_ALIVE_RATE_PER_SECOND: String(ratePerSecond),
    },
  });
  try {
    const now = Date.now();
    await seed(broker, now);
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake Salesforce');
    fake.resetCalls();
    const time = steppedTime(now);
    const deps = { ...sweepDependencies(broker, time), log: quiet };
    const before = snapshot(broker);
    const started = performance.now();
    const report = await runSweep(deps, { stopAt: now + 86_400_000 });
    const wallMs = performance.now() - started;
    const after = snapshot(broker);
    if (report.keptAlive !== KEEP_ALIVE_DUE || report.expiredRevoked !== EXPIRED) {
      throw new Error(`the sweep did not finish its work: ${JSON.stringify(report)}`);
    }
    return {
      dynamodb: delta(before.dynamodb, after.dynamodb),
      kms: delta(before.kms, after.kms),
      salesforce: fake.calls.tokenRefresh + fake.calls.revoke,
      clockMs: time.clock.now() - now,
      wallMs,
    };
  } finally {
    await broker.close();
  }
}

export async function benchSweep(): Promise<string> {
  const paced = await sweepOnce(DEFAULT_RATE);
  // Unpaced: a rate no run reaches, so the wall time is the sweep's own work.
  const unpaced = await sweepOnce(100);
  const per1000 = (count: number) => ((count * 1000) / DUE).toFixed(0);
  const reads = Object.entries(paced.dynamodb).filter(([name]) => READS.has(name));
  const writes = Object.entries(paced.dynamodb).filter(([name]) => !READS.has(name));
  const sum = (entries: Array<[string, number]>) => entries.reduce((n, [, c]) => n + c, 0);
  const describe = (entries: Array<[string, number]>) =>
    entries.map(([name, count]) => `${name} ${per1000(count)}`).join(', ');
  const rows: Array<Array<string | number>> = [
    ['DynamoDB reads', per1000(sum(reads)), describe(reads)],
    ['DynamoDB writes', per1000(sum(writes)), describe(writes)],
    ['KMS calls', per1000(sum(Object.entries(paced.kms))), describe(Object.entries(paced.kms))],
    ['Salesforce calls', per1000(paced.salesforce), 'token refresh + revoke'],
    [
      `time at ${DEFAULT_RATE}/s (sweep's clock)`,
      `${((paced.clockMs * 1000) / DUE / 1000).toFixed(0)} s`,
      'what a deployed run takes: the pace, not the work',
    ],
    [
      'time unpaced (wall, this machine)',
      `${((unpaced.wallMs * 1000) / DUE / 1000).toFixed(1)} s`,
      'the sweep itself against dynalite, the emulators and the fake',
    ],
  ];
  return [
    `One run over ${(FILLER + DUE).toLocaleString('en')} connections, ${DUE} due ` +
      `(${KEEP_ALIVE_DUE} keep-alive, ${EXPIRED} expired); per 1,000 connections swept:`,
    '',
    table(['per 1,000 swept', 'count', 'detail'], rows),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchSweep());
}
