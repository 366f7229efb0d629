import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type FakeSalesforce, startFakeSalesforce } from '../../local/fake-salesforce.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from '../support/free-port.ts';

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Runs `npm start`'s script as a child process and collects what it prints. */
function start(env: Record<string, string>): Run {
  return collect(
    spawn(process.execPath, ['--import', 'tsx', 'local/start.ts'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/**
 * Runs `npm start` itself (npm, its shell, then node), in a process group of its own so a
 * test can always end all of it.
 */
function npmStart(env: Record<string, string>): Run {
  return collect(
    spawn('npm', ['start'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    }),
  );
}

function collect(child: ChildProcess): Run {
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

async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The port in the banner's `broker` line. */
function bannerPort(output: string): number {
  const port = /broker {6}http:\/\/localhost:(\d+)/.exec(output)?.[1];
  if (!port) throw new Error(`no broker line in:\n${output}`);
  return Number(port);
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** One request to 127.0.0.1:port with the given Host header (fetch cannot set it). */
function ask(
  port: number,
  options: { method?: string; path: string; host: string; headers?: Record<string, string> },
): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: { ...options.headers, host: options.host },
      },
      (response) => {
        let body = '';
        response.on('data', (chunk) => {
          body += String(chunk);
        });
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, location: response.headers.location, body }),
        );
      },
    );
    outgoing.once('error', reject);
    outgoing.end();
  });
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

  it.each(['SIGTERM', 'SIGHUP'] as const)(
    'stops cleanly on %s, as sent by a process manager or a closed terminal',
    async (signal) => {
      // Prepare
      const run = start({ PORT: '0', HOST: '127.0.0.1' });
      await waitFor(() => run.output().includes('Press Ctrl-C to stop.'));

      // Act
      run.child.kill(signal);
      const code = await run.exited;

      // Assert: exit code 0 after closing, not killed by the signal
      expect(code).toBe(0);
      expect(run.output()).toContain(`Stopping (${signal})`);
    },
  );

  it('serves /token, and registers an app only when CLIENT_APPS says so, as deployed', async () => {
    // Prepare: one run with an app registered, one without (the stack's default)
    const apps = [{ client_id: 'desktop', redirect_uris: ['http://127.0.0.1/callback'] }];
    const withApps = start({ PORT: '0', HOST: '127.0.0.1', CLIENT_APPS: JSON.stringify(apps) });
    const withoutApps = start({ PORT: '0', HOST: '127.0.0.1', CLIENT_APPS: '' });
    await waitFor(() => withApps.output().includes('Press Ctrl-C to stop.'));
    await waitFor(() => withoutApps.output().includes('Press Ctrl-C to stop.'));
    const urlOf = (run: Run) => /broker {6}(http:\/\/\S+)/.exec(run.output())?.[1] ?? '';
    const query = new URLSearchParams({
      client_id: 'desktop',
      redirect_uri: 'http://127.0.0.1:8123/callback',
      state: 'app-state',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    });

    // Act
    const registered = await fetch(`${urlOf(withApps)}/login?${query}`, { redirect: 'manual' });
    const unregistered = await fetch(`${urlOf(withoutApps)}/login?${query}`, {
      redirect: 'manual',
    });
    const token = await fetch(`${urlOf(withApps)}/token`, { method: 'POST' });
    withApps.child.kill('SIGINT');
    withoutApps.child.kill('SIGINT');
    await Promise.all([withApps.exited, withoutApps.exited]);

    // Assert
    expect(withApps.output()).toContain('/token)');
    expect(registered.status).toBe(302);
    expect(registered.headers.get('location')).toContain('/services/oauth2/authorize?');
    expect(unregistered.status).toBe(400);
    expect(unregistered.headers.get('location')).toBeNull();
    expect(token.status).toBe(400);
    expect(await token.json()).toMatchObject({ error: 'invalid_request' });
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

describe('npm start with PORT=0 and another host name', () => {
  let run: Run | undefined;

  afterEach(async () => {
    run?.child.kill('SIGINT');
    await run?.exited;
    run = undefined;
  });

  it('listens on a free port, prints it, and registers that callback at the mock org', async () => {
    // Prepare
    run = start({ PORT: '0', HOST: '127.0.0.1' });
    await waitFor(() => run?.output().includes('Press Ctrl-C to stop.') ?? false);
    const port = bannerPort(run.output());
    const base = `http://localhost:${port}`;

    // Act
    const login = await ask(port, { path: '/login?return_to=/', host: `localhost:${port}` });
    const authorizeUrl = new URL(login.location ?? '');
    const authorize = await fetch(authorizeUrl, { redirect: 'manual' });

    // Assert
    expect(port).toBeGreaterThan(0);
    expect(run.output()).toContain(`demo page   ${base}/`);
    expect(login.status).toBe(302);
    expect(authorizeUrl.searchParams.get('redirect_uri')).toBe(`${base}/callback`);
    expect(authorize.status).toBe(200);
    expect(await authorize.text()).toContain('name="username"');
  });

  it("sends pages and /login at another host to PUBLIC_URL's origin and refuses its cookie calls", async () => {
    // Prepare: PUBLIC_URL is http://localhost:<port>; the browser asked for 127.0.0.1
    run = start({ PORT: '0', HOST: '127.0.0.1' });
    await waitFor(() => run?.output().includes('Press Ctrl-C to stop.') ?? false);
    const port = bannerPort(run.output());
    const elsewhere = `127.0.0.1:${port}`;

    // Act
    const page = await ask(port, { path: '/?from=bookmark', host: elsewhere });
    const login = await ask(port, { path: '/login?return_to=/', host: elsewhere });
    const hijack = await ask(port, { path: '//evil.example/x', host: elsewhere });
    const cookieCall = await ask(port, {
      method: 'POST',
      path: '/refresh',
      host: elsewhere,
      headers: { 'x-csrf': '1', cookie: '__Host-tb-session=x' },
    });
    const bearerCall = await ask(port, {
      method: 'POST',
      path: '/refresh',
      host: elsewhere,
      headers: { authorization: 'Bearer x' },
    });
    const samePage = await ask(port, { path: '/', host: `localhost:${port}` });

    // Assert
    expect(page).toMatchObject({
      status: 307,
      location: `http://localhost:${port}/?from=bookmark`,
    });
    expect(login).toMatchObject({
      status: 307,
      location: `http://localhost:${port}/login?return_to=/`,
    });
    expect(new URL(hijack.location ?? '').origin).toBe(`http://localhost:${port}`);
    expect(cookieCall.status).toBe(421);
    expect(JSON.parse(cookieCall.body)).toMatchObject({
      error: 'misdirected_request',
      error_description: expect.stringContaining(`http://localhost:${port}`),
    });
    expect(bearerCall.status).toBe(401);
    expect(samePage.status).toBe(200);
  });
});

describe('npm start under npm', () => {
  let run: Run | undefined;

  afterEach(() => {
    // Whatever the outcome, end npm's whole process group (started by this test).
    const pid = run?.child.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    run = undefined;
  });

  it.each(['SIGTERM', 'SIGHUP', 'SIGKILL'] as const)(
    'frees the port when the npm process gets %s',
    async (signal) => {
      // Prepare
      run = npmStart({ PORT: '0', HOST: '127.0.0.1' });
      await waitFor(() => run?.output().includes('Press Ctrl-C to stop.') ?? false, 60_000);
      const port = bannerPort(run.output());
      const acceptedBefore = await accepts(port);

      // Act: only npm itself, as a terminal or a process manager would
      run.child.kill(signal);
      await run.exited;

      // Assert: the server behind npm's shell does not live on
      await waitFor(async () => !(await accepts(port)), 20_000);
      expect(acceptedBefore).toBe(true);
    },
    90_000,
  );
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
    const base = `http://127.0.0.1:${port}`;
    org = await startFakeSalesforce({
      clientId: 'independent-client',
      clientSecret: 'independent-secret',
      redirectUris: [`${base}/callback`],
      autoApprove: true,
    });
    broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: base,
      SALESFORCE_LOGIN_URL: org.url,
      SALESFORCE_CLIENT_ID: 'independent-client',
      SALESFORCE_CLIENT_SECRET: 'independent-secret',
    });

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
