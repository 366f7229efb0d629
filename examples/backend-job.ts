/**
 * A backend job on the broker's service API (README "Backend jobs: the service API"): it
 * lists a user's connections, gets a fresh Salesforce access token for the first one and
 * runs a SOQL query with jsforce. It signs its calls with SigV4 (service `execute-api`)
 * using the default AWS credential chain (environment, shared config and SSO, container
 * and instance roles), as a Lambda function or an ECS task would; it never holds a
 * refresh token or the connected app's secret.
 *
 * Environment: BROKER_URL (the API's URL), ORGANIZATION_ID, USER_ID (optional: every user
 * of the org), AWS_REGION (the broker's region; default us-east-1), and AWS credentials
 * allowed by `TokenBroker.grantServiceAccess`.
 *
 *   node --import tsx examples/backend-job.ts
 * @see https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 */
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import jsforce from 'jsforce';

interface ConnectionToken {
  access_token: string;
  instance_url: string;
  version: number;
}

const brokerUrl = required('BROKER_URL').replace(/\/+$/, '');
const organizationId = required('ORGANIZATION_ID');
const userId = process.env.USER_ID || undefined;
const region = process.env.AWS_REGION || 'us-east-1';

const signer = new SignatureV4({
  credentials: defaultProvider(),
  region,
  service: 'execute-api',
  sha256: Hash.bind(null, 'sha256'),
});

/** One signed call to the service API; a non-2xx answer throws with its status and code. */
async function callBroker(method: string, path: string, body?: unknown): Promise<unknown> {
  const url = new URL(`${brokerUrl}${path}`);
  const text = body === undefined ? undefined : JSON.stringify(body);
  const signed = await signer.sign({
    method,
    protocol: url.protocol,
    hostname: url.hostname,
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers: {
      host: url.host,
      ...(text === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(text === undefined ? {} : { body: text }),
  });
  const { host: _host, ...headers } = signed.headers;
  const response = await fetch(url, {
    method,
    headers,
    ...(text === undefined ? {} : { body: text }),
    signal: AbortSignal.timeout(30_000),
  });
  const answer = response.status === 204 ? undefined : await response.json();
  if (!response.ok) {
    const error = (answer as { error?: string; message?: string } | undefined) ?? {};
    throw new Error(
      `${method} ${url.pathname}: ${response.status} ${error.error ?? error.message}`,
    );
  }
  return answer;
}

async function main(): Promise<void> {
  const query = new URLSearchParams({ organization_id: organizationId, limit: '10' });
  if (userId) query.set('user_id', userId);
  const listing = (await callBroker('GET', `/connections?${query}`)) as {
    connections: { connection_id: string; user_id: string }[];
  };
  process.stdout.write(`connections: ${listing.connections.length}\n`);
  const [first] = listing.connections;
  if (!first) throw new Error('no connection for that organization (log in once first)');

  const tokenPath = `/connections/${encodeURIComponent(first.connection_id)}/token`;
  let token = (await callBroker('POST', tokenPath)) as ConnectionToken;
  const connection = new jsforce.Connection({
    instanceUrl: token.instance_url,
    accessToken: token.access_token,
    version: '65.0',
    // On 401 INVALID_SESSION_ID: the version held is dead; the broker refreshes it once,
    // single-flight with every other caller of this connection.
    refreshFn: (_connection, callback) => {
      callBroker('POST', tokenPath, { version: token.version })
        .then((fresh) => {
          token = fresh as ConnectionToken;
          callback(null, token.access_token);
        })
        .catch((error: Error) => callback(error));
    },
  });
  const result = await connection.query<{ Id: string; Name: string }>(
    'SELECT Id, Name FROM Account LIMIT 5',
  );
  process.stdout.write(`connection ${first.connection_id} (user ${first.user_id})\n`);
  for (const record of result.records) process.stdout.write(`account: ${record.Name}\n`);
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`Set ${name} (see the comment at the top of this file).\n`);
    process.exit(2);
  }
  return value;
}

main().catch((error: unknown) => {
  process.stderr.write(`backend job failed: ${(error as Error).message}\n`);
  process.exit(1);
});
