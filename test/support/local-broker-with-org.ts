import {
  type FakeSalesforce,
  type FakeSalesforceOptions,
  startFakeSalesforce,
} from '../../local/fake-salesforce.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from './free-port.ts';

/**
 * `npm start` against a fake org of its own that auto-approves logins back to this
 * broker's `/callback`, on a free loopback port: the setup of the tests that drive the
 * local run end to end (a login, then what follows from it).
 */
export async function startBrokerWithOrg(options: {
  clientId: string;
  clientSecret: string;
  org?: Partial<FakeSalesforceOptions>;
  /** More environment for `startBrokerLocally` (e.g. `LOCAL_EVENTS_FILE`). */
  env?: Record<string, string>;
}): Promise<{ org: FakeSalesforce; broker: RunningBroker; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const org = await startFakeSalesforce({
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    redirectUris: [`${base}/callback`],
    autoApprove: true,
    ...options.org,
  });
  try {
    const broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: base,
      SALESFORCE_LOGIN_URL: org.url,
      SALESFORCE_CLIENT_ID: options.clientId,
      SALESFORCE_CLIENT_SECRET: options.clientSecret,
      ...options.env,
    });
    return { org, broker, base };
  } catch (error) {
    await org.close();
    throw error;
  }
}
