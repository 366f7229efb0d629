import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { type FakeSalesforce, startFakeSalesforce } from '../../local/fake-salesforce.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Runs `npm start`'s script as a child process and collects what it prints. */
function start(env: Record<string, string>): {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'local/start.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += String(chunk);
  });
  child.stderr?.on('data', (chunk) => {
    output += String(chunk);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, output: () => output, exited };
}

async function waitFor(predicate: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('npm start', () => {
  it('prints what runs where, serves the demo and the routes, and stops cleanly on Ctrl-C', async () => {
    // Prepare
    const port = await freePort();
    const run = start({ PORT: String(port) });
    await waitFor(() => run.output().includes('Press Ctrl-C to stop.'));

    // Act
    const page = await fetch(`http://localhost:${port}/`);
    const refresh = await fetch(`http://localhost:${port}/refresh`, { method: 'POST' });
    const login = await fetch(`http://localhost:${port}/login`, { redirect: 'manual' });
    run.child.kill('SIGINT');
    const code = await run.exited;

    // Assert
    expect(run.output()).toContain(`broker      http://localhost:${port}`);
    expect(run.output()).toMatch(/mock org {4}http:\/\/127\.0\.0\.1:\d+/);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Log in with Salesforce');
    expect(refresh.status).toBe(401);
    expect(await refresh.json()).toMatchObject({ error: 'invalid_session' });
    expect(login.status).toBe(302);
    expect(login.headers.get('location')).toContain('/services/oauth2/authorize?');
    expect(code).toBe(0);
  });

  it('says what to do when the port is taken', async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)),
    );

    const run = start({ PORT: String(port), HOST: '127.0.0.1' });
    const code = await run.exited;
    blocker.close();

    expect(code).toBe(1);
    expect(run.output()).toContain(`Port ${port} is taken`);
    expect(run.output()).toContain('PORT=');
    expect(run.output()).not.toContain('    at ');
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT must be a port number'],
    [{ SALESFORCE_LOGIN_URL: 'https://login.salesforce.com' }, 'also set SALESFORCE_CLIENT_ID'],
  ])('refuses %j with a message naming the variable', async (env, message) => {
    const run = start(env);
    const code = await run.exited;

    expect(code).toBe(1);
    expect(run.output()).toContain(message);
  });
});

describe('npm start against an independent Salesforce-like server', () => {
  let org: FakeSalesforce;
  let broker: RunningBroker;

  afterAll(async () => {
    await broker?.close();
    await org?.close();
  });

  it('logs in, refreshes and logs out with no code change', async () => {
    // Prepare: a separate server on loopback, configured like a connected app
    const port = await freePort();
    org = await startFakeSalesforce({
      clientId: 'independent-client',
      clientSecret: 'independent-secret',
      redirectUris: [`http://localhost:${port}/callback`],
      autoApprove: true,
    });
    broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      SALESFORCE_LOGIN_URL: org.url,
      SALESFORCE_CLIENT_ID: 'independent-client',
      SALESFORCE_CLIENT_SECRET: 'independent-secret',
    });
    const base = `http://127.0.0.1:${port}`;

    // Act: /login -> authorize (auto-approved) -> /callback
    const login = await fetch(`${base}/login`, { redirect: 'manual' });
    const loginCookie = (login.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
    const authorize = await fetch(login.headers.get('location') ?? '', { redirect: 'manual' });
    const callbackUrl = new URL(authorize.headers.get('location') ?? '');
    const callback = await fetch(`${base}${callbackUrl.pathname}${callbackUrl.search}`, {
      redirect: 'manual',
      headers: { cookie: loginCookie },
    });
    const sessionCookie = callback.headers
      .getSetCookie()
      .find((cookie) => cookie.startsWith('__Host-tb-session='));
    const handle = sessionCookie?.split(';')[0]?.split('=')[1] ?? '';
    const refresh = await fetch(`${base}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}`, 'content-type': 'application/json' },
      body: JSON.stringify({ version: 1 }),
    });
    const logout = await fetch(`${base}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });

    // Assert
    expect(broker.stack.salesforce).toBeUndefined();
    expect(login.headers.get('location')).toContain(`${org.url}/services/oauth2/authorize?`);
    expect(callback.status).toBe(302);
    expect(refresh.status).toBe(200);
    expect(await refresh.json()).toMatchObject({ instance_url: org.url, version: 2 });
    expect(logout.status).toBe(204);
    expect(org.calls).toMatchObject({ tokenCode: 1, tokenRefresh: 1, revoke: 1 });
  });
});
