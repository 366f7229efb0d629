/**
 * `npm start`: the broker on this machine, with no AWS account and (by default) no
 * Salesforce org. It starts dynalite, the KMS and Secrets Manager emulators and, unless
 * SALESFORCE_LOGIN_URL is set, a mock Salesforce org with a real login page; then it
 * serves the four Lambda entry files through a server that speaks HTTP API v2 events to
 * them, plus a demo page at `/`.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DynamoDbSessionStore } from '../functions/aws/dynamodb-session-store.ts';
import { createSweepHandler } from '../functions/routes/sweep.ts';
import { buildRuntime } from '../functions/runtime.ts';
import { startDemo } from './demo/demo.ts';
import { listen } from './lambda-http.ts';
import {
  generateLocalCredentials,
  LOCAL_CALLER_ARN,
  type ServiceCredentials,
  SigV4Verifier,
} from './sigv4-verifier.ts';
import { type LocalStack, startLocalStack } from './stack.ts';

class StartupError extends Error {}

function readSettings(env: NodeJS.ProcessEnv) {
  const rawPort = env.PORT ?? '3000';
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) > 65_535) {
    throw new StartupError(`PORT must be a port number (0: any free port), got "${rawPort}".`);
  }
  const publicUrl = env.PUBLIC_URL?.trim().replace(/\/+$/, '') || undefined;
  if (publicUrl !== undefined && !URL.canParse(publicUrl)) {
    throw new StartupError(`PUBLIC_URL must be an absolute URL, got "${publicUrl}".`);
  }
  const loginUrl = env.SALESFORCE_LOGIN_URL?.trim() || undefined;
  if (loginUrl && (!env.SALESFORCE_CLIENT_ID || !env.SALESFORCE_CLIENT_SECRET)) {
    throw new StartupError(
      'SALESFORCE_LOGIN_URL is set: also set SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET ' +
        '(the consumer key and secret of your connected app).',
    );
  }
  return {
    port: Number(rawPort),
    host: env.HOST ?? 'localhost',
    /** Unset: `http://localhost:<the port listened on>`, known only once listening. */
    publicUrl,
    loginUrl,
    clientId: env.SALESFORCE_CLIENT_ID || 'mock-org-client-id',
    clientSecret: env.SALESFORCE_CLIENT_SECRET || 'mock-org-client-secret',
    scopes: env.SALESFORCE_SCOPES,
    allowedOrigins: env.ALLOWED_ORIGINS,
    returnToPrefixes: env.RETURN_TO_PREFIXES,
    /** Registered apps of the handoff, passed through as deployed (none unless set). */
    clientApps: env.CLIENT_APPS,
    /** The login host allow-list, passed through as deployed (the functions' default unless set). */
    loginHosts: env.LOGIN_HOSTS,
    /** Several connected apps need their secrets in Secrets Manager: not in the local run. */
    salesforceApps: env.SALESFORCE_APPS?.trim() || undefined,
    /** Each published event is appended to this file as one JSON line, when set. */
    eventsFile: env.LOCAL_EVENTS_FILE?.trim() || undefined,
    /** The region service API calls are signed for, as API Gateway's in a deployment. */
    serviceRegion: env.AWS_REGION || 'us-east-1',
    /** The caller of the service API: the AWS credentials of this environment, if set. */
    serviceCredentials:
      env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? {
            accessKeyId: env.AWS_ACCESS_KEY_ID,
            secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
            sessionToken: env.AWS_SESSION_TOKEN || undefined,
          }
        : undefined,
  };
}

export interface RunningBroker {
  /** `PUBLIC_URL`: the origin the broker answers as, with the real port when PORT=0. */
  readonly url: string;
  /** The port listened on (the ephemeral one when PORT=0). */
  readonly port: number;
  readonly stack: LocalStack;
  /**
   * The one caller the service API accepts (SigV4 for `execute-api` in `region`): the
   * AWS credentials of the environment, or a pair generated at start.
   */
  readonly service: {
    readonly credentials: ServiceCredentials;
    readonly region: string;
    /** Whether the pair was generated (the banner prints it) or taken from the environment. */
    readonly generated: boolean;
  };
  close(): Promise<void>;
}

async function listenOn(port: number, host: string): Promise<Server> {
  try {
    return await listen(port, host);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new StartupError(
        `Port ${port} is taken. Stop what runs there or start with PORT=<another port> (PORT=0: any free port).`,
      );
    }
    throw error;
  }
}

/**
 * Starts the local stack and the broker server from environment-style settings. The port
 * is bound first: with PORT=0 only then is it known, and the callback URL registered at the
 * mock org and the entry files' CALLBACK_URL (read when they are imported) must carry it.
 */
export async function startBrokerLocally(env: NodeJS.ProcessEnv): Promise<RunningBroker> {
  const settings = readSettings(env);
  if (settings.salesforceApps) {
    throw new StartupError(
      'SALESFORCE_APPS is not supported by npm start, which runs one connected app (its ' +
        'mock org or SALESFORCE_CLIENT_ID / SALESFORCE_CLIENT_SECRET): unset it.',
    );
  }
  const listener = await listenOn(settings.port, settings.host);
  const { port } = listener.address() as AddressInfo;
  const publicUrl = settings.publicUrl ?? `http://localhost:${port}`;
  const callbackUrl = `${publicUrl}/callback`;

  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      salesforce: settings.loginUrl
        ? false
        : { redirectUris: [callbackUrl], username: 'demo@example.com' },
      ...(settings.loginUrl ? { salesforceLoginUrl: settings.loginUrl } : {}),
      clientId: settings.clientId,
      clientSecret: settings.clientSecret,
      events: true,
    });
  } catch (error) {
    listener.close();
    throw error;
  }

  // The entry files read their configuration from the environment, as on Lambda.
  Object.assign(process.env, stack.env, {
    CALLBACK_URL: callbackUrl,
    // Like the stack: only what the user set (the broker's own origin is always allowed).
    ALLOWED_ORIGINS: settings.allowedOrigins ?? '',
    ...(settings.scopes ? { SALESFORCE_SCOPES: settings.scopes } : {}),
    ...(settings.returnToPrefixes ? { RETURN_TO_PREFIXES: settings.returnToPrefixes } : {}),
    ...(settings.clientApps ? { CLIENT_APPS: settings.clientApps } : {}),
    ...(settings.loginHosts ? { LOGIN_HOSTS: settings.loginHosts } : {}),
    POWERTOOLS_SERVICE_NAME: process.env.POWERTOOLS_SERVICE_NAME ?? 'token-broker-local',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  await attachPublisher(stack, settings.eventsFile);

  const service = {
    credentials: settings.serviceCredentials ?? generateLocalCredentials(),
    region: settings.serviceRegion,
    generated: settings.serviceCredentials === undefined,
  };
  try {
    const server = await startDemo({
      port,
      host: settings.host,
      server: listener,
      publicUrl,
      stack,
      serviceVerifier: new SigV4Verifier(service),
    });
    const sweep = startLocalSweep(env);
    return {
      url: publicUrl,
      port,
      stack,
      service,
      async close() {
        await sweep.stop();
        await server.close();
        await stack.close();
      },
    };
  } catch (error) {
    listener.close();
    await stack.close();
    throw error;
  }
}

/**
 * Runs the deployed publisher (`functions/publisher.ts`, loaded like Lambda loads it once
 * the environment is set) on the change capture's stream records, and writes each event
 * the bus accepts to `LOCAL_EVENTS_FILE` as one JSON line.
 */
async function attachPublisher(stack: LocalStack, eventsFile: string | undefined): Promise<void> {
  const events = stack.events;
  if (events === undefined) return;
  if (eventsFile !== undefined) {
    events.bus.onEvent((event) => appendFileSync(eventsFile, `${JSON.stringify(event)}\n`));
  }
  const publisher = (await import('../functions/publisher.ts')) as {
    handler: (event: unknown, context: unknown) => Promise<unknown>;
  };
  events.capture.setHandler(
    (batch) =>
      publisher.handler(batch, { getRemainingTimeInMillis: () => 30_000 }) as Promise<{
        batchItemFailures: { itemIdentifier: string }[];
      }>,
  );
}

/** `LOCAL_SWEEP_INTERVAL_SECONDS`' default: the deployed sweep runs once a day. */
const DEFAULT_LOCAL_SWEEP_INTERVAL_SECONDS = 60;

/**
 * The scheduled sweep (README "Keep-alive and expiry") on an interval instead of
 * EventBridge Scheduler: the same handler the Lambda entry builds, over the same
 * environment (`KEEP_ALIVE_AFTER_SECONDS` shortens the keep-alive age so it shows within
 * minutes). One run at a time; `0` turns it off.
 */
function startLocalSweep(env: NodeJS.ProcessEnv): { stop(): Promise<void> } {
  const raw = env.LOCAL_SWEEP_INTERVAL_SECONDS?.trim();
  const seconds = raw ? Number(raw) : DEFAULT_LOCAL_SWEEP_INTERVAL_SECONDS;
  if (!Number.isInteger(seconds) || seconds < 0) {
    throw new Error(`LOCAL_SWEEP_INTERVAL_SECONDS must be a whole number, got "${raw}"`);
  }
  if (seconds === 0) return { stop: async () => {} };
  const runtime = buildRuntime(process.env);
  const handler = createSweepHandler({
    ...runtime,
    index: runtime.store as DynamoDbSessionStore,
  });
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = handler({}, { getRemainingTimeInMillis: () => seconds * 1000 + 60_000 })
      .then((report) => {
        if (report.seen > 0) console.log(`sweep: ${JSON.stringify(report)}`);
      })
      .catch((error: unknown) => console.error('sweep failed:', error))
      .finally(() => {
        running = undefined;
      });
  }, seconds * 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/** The parent process id of `pid` (Linux `/proc`); undefined when gone or unknown. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (command) state ppid ...": the command may hold spaces and parentheses.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/**
 * Calls `onGone` once the process that launched this one has ended. Under `npm start` the
 * chain is npm -> sh -> node: npm hands SIGTERM to the shell, which dies without passing it
 * on, SIGHUP and SIGKILL end npm alone, and this process, holding the port, would live on.
 * So it watches its parent (the shell) and, on Linux, its parent's parent (npm).
 */
function whenLauncherEnds(onGone: () => void): void {
  const parent = process.ppid;
  const grandparent = parentOf(parent);
  const timer = setInterval(() => {
    const parentGone = process.ppid !== parent;
    const grandparentGone = grandparent !== undefined && parentOf(parent) !== grandparent;
    if (parentGone || grandparentGone) {
      clearInterval(timer);
      onGone();
    }
  }, 500);
  timer.unref();
}

async function main(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const settings = readSettings(process.env);

  // The handlers go in before anything is printed: whoever reads the banner may signal at
  // once, and a signal that arrives before its handler ends the process with no cleanup.
  let broker: RunningBroker | undefined;
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\nStopping (${why})...\n`);
    await broker?.close();
    process.exit(0);
  };
  // SIGHUP: the terminal closed; SIGTERM: a process manager, or `kill`.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => void stop(signal));
  }
  whenLauncherEnds(() => void stop('the process that started it ended'));

  // Signalled while starting: stop() exits with nothing to close (all of it is in memory).
  broker = await startBrokerLocally(process.env);
  const { stack } = broker;

  const lines = [
    '',
    'Salesforce token broker, running locally',
    `  broker      ${broker.url}  (/login /callback /refresh /logout /session /token)`,
    `  demo page   ${broker.url}/`,
    stack.salesforce
      ? `  mock org    ${stack.salesforce.url}  (login page; any password)`
      : `  Salesforce  ${settings.loginUrl}  (register ${broker.url}/callback in the connected app)`,
    `  DynamoDB    ${stack.dynamodbUrl} (dynalite, in memory)`,
    `  KMS         ${stack.kms.url} (local emulator)`,
    `  Secrets     ${stack.secretsManager.url} (local emulator)`,
    ...(stack.events
      ? [
          `  EventBridge ${stack.events.bus.url} (local emulator; events on the demo page${settings.eventsFile ? ` and in ${settings.eventsFile}` : ''})`,
        ]
      : []),
    `  service API ${broker.url}/connections  (SigV4, execute-api, ${broker.service.region}; caller ${LOCAL_CALLER_ARN})`,
    ...(broker.service.generated
      ? [
          '              no AWS credentials were set; a backend job signs with this local pair:',
          `              export AWS_ACCESS_KEY_ID=${broker.service.credentials.accessKeyId} AWS_SECRET_ACCESS_KEY=${broker.service.credentials.secretAccessKey} AWS_REGION=${broker.service.region} BROKER_URL=${broker.url}`,
        ]
      : ['              signed with the AWS credentials of this environment']),
    '',
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stderr.write(lines.join('\n'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    const message =
      error instanceof StartupError || (error as Error).name === 'ConfigError'
        ? (error as Error).message
        : `Could not start: ${(error as Error).stack ?? String(error)}`;
    process.stderr.write(`\n${message}\n`);
    process.exit(1);
  });
}
