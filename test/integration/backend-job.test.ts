/**
 * `examples/backend-job.ts` as documented (README "Backend jobs: the service API"): a
 * child process against the broker of `npm start` (`startBrokerLocally`), after a login,
 * with the local credential pair in its environment for the default AWS credential chain.
 */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { type FakeSalesforce, startFakeSalesforce } from '../../local/fake-salesforce.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { browserLogin } from '../support/browser-login.ts';
import { freePort } from '../support/free-port.ts';

function run(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/backend-job.ts'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += String(chunk);
    });
    child.stderr.on('data', (chunk) => {
      output += String(chunk);
    });
    child.once('exit', (code) => resolve({ code, output }));
  });
}

describe('examples/backend-job.ts', () => {
  let org: FakeSalesforce | undefined;
  let broker: RunningBroker | undefined;

  afterAll(async () => {
    await broker?.close();
    await org?.close();
  });

  it("lists the user's connections, gets a token through the service API and runs a query", async () => {
    // Prepare: the broker of `npm start` with no AWS credentials (a generated pair), a login
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    org = await startFakeSalesforce({
      clientId: 'job-client',
      clientSecret: 'job-secret',
      redirectUris: [`${base}/callback`],
      autoApprove: true,
    });
    broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: base,
      SALESFORCE_LOGIN_URL: org.url,
      SALESFORCE_CLIENT_ID: 'job-client',
      SALESFORCE_CLIENT_SECRET: 'job-secret',
    });
    const login = await browserLogin(base);
    const session = {
      connection_id: login.connectionId,
      organization_id: login.organizationId,
      user_id: login.userId,
    };
    org.resetCalls();

    // Act: only what the README tells a user to set, nothing of this process's AWS setup
    const job = await run({
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      BROKER_URL: broker.url,
      ORGANIZATION_ID: session.organization_id,
      USER_ID: session.user_id,
      AWS_REGION: broker.service.region,
      AWS_ACCESS_KEY_ID: broker.service.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: broker.service.credentials.secretAccessKey,
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    });

    // Assert
    expect(broker.service.generated).toBe(true);
    expect(job.code, job.output).toBe(0);
    expect(job.output).toContain('connections: 1');
    expect(job.output).toContain(`connection ${session.connection_id}`);
    expect(job.output).toMatch(/account: \S+/);
    expect(org.calls.rest).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
