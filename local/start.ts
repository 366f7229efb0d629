/**
 * `npm start`: the broker on this machine, with no AWS account and (by default) no
 * Salesforce org. It starts dynalite, the KMS and Secrets Manager emulators and, unless
 * SALESFORCE_LOGIN_URL is set, a mock Salesforce org with a real login page; then it
 * serves the four Lambda entry files through a server that speaks HTTP API v2 events to
 * them, plus a demo page at `/`.
 */
import { existsSync } from 'node:fs';
import { startDemo } from './demo/demo.ts';
import { type LocalStack, startLocalStack } from './stack.ts';

class StartupError extends Error {}

function readSettings(env: NodeJS.ProcessEnv) {
  const rawPort = env.PORT ?? '3000';
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) > 65_535) {
    throw new StartupError(`PORT must be a port number, got "${rawPort}".`);
  }
  const port = Number(rawPort);
  const publicUrl = (env.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, '');
  let origin: string;
  try {
    origin = new URL(publicUrl).origin;
  } catch {
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
    port,
    host: env.HOST ?? 'localhost',
    publicUrl,
    origin,
    loginUrl,
    clientId: env.SALESFORCE_CLIENT_ID || 'mock-org-client-id',
    clientSecret: env.SALESFORCE_CLIENT_SECRET || 'mock-org-client-secret',
    scopes: env.SALESFORCE_SCOPES,
    allowedOrigins: env.ALLOWED_ORIGINS ?? origin,
    returnToPrefixes: env.RETURN_TO_PREFIXES,
  };
}

export interface RunningBroker {
  readonly url: string;
  readonly stack: LocalStack;
  close(): Promise<void>;
}

/** Starts the local stack and the broker server from environment-style settings. */
export async function startBrokerLocally(env: NodeJS.ProcessEnv): Promise<RunningBroker> {
  const settings = readSettings(env);
  const stack = await startLocalStack({
    salesforce: settings.loginUrl
      ? false
      : { redirectUris: [`${settings.publicUrl}/callback`], username: 'demo@example.com' },
    ...(settings.loginUrl ? { salesforceLoginUrl: settings.loginUrl } : {}),
    clientId: settings.clientId,
    clientSecret: settings.clientSecret,
  });

  // The entry files read their configuration from the environment, as on Lambda.
  Object.assign(process.env, stack.env, {
    CALLBACK_URL: `${settings.publicUrl}/callback`,
    ALLOWED_ORIGINS: settings.allowedOrigins,
    ...(settings.scopes ? { SALESFORCE_SCOPES: settings.scopes } : {}),
    ...(settings.returnToPrefixes ? { RETURN_TO_PREFIXES: settings.returnToPrefixes } : {}),
    POWERTOOLS_SERVICE_NAME: process.env.POWERTOOLS_SERVICE_NAME ?? 'token-broker-local',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });

  try {
    const server = await startDemo({ port: settings.port, host: settings.host, stack });
    return {
      url: settings.publicUrl,
      stack,
      async close() {
        await server.close();
        await stack.close();
      },
    };
  } catch (error) {
    await stack.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new StartupError(
        `Port ${settings.port} is taken. Stop what runs there or start with PORT=<another port>.`,
      );
    }
    throw error;
  }
}

async function main(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const settings = readSettings(process.env);
  const broker = await startBrokerLocally(process.env);
  const { stack } = broker;

  const lines = [
    '',
    'Salesforce token broker, running locally',
    `  broker      ${settings.publicUrl}  (/login /callback /refresh /logout)`,
    `  demo page   ${settings.publicUrl}/`,
    stack.salesforce
      ? `  mock org    ${stack.salesforce.url}  (login page; any password)`
      : `  Salesforce  ${settings.loginUrl}  (register ${settings.publicUrl}/callback in the connected app)`,
    `  DynamoDB    ${stack.dynamodbUrl} (dynalite, in memory)`,
    `  KMS         ${stack.kms.url} (local emulator)`,
    `  Secrets     ${stack.secretsManager.url} (local emulator)`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stderr.write(lines.join('\n'));

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('\nStopping...\n');
    await broker.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
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
