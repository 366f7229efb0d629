import type { BrokerClient } from './client.js';

/** The parts of a jsforce `Connection` the refresh function reads and sets. */
interface JsforceConnection {
  accessToken?: string | null;
  instanceUrl?: string;
}

/**
 * jsforce's `refreshFn` option, backed by the broker: jsforce calls it when the REST API
 * answers `401 INVALID_SESSION_ID`, then retries the request with the new token. The token
 * the connection holds is invalidated only if it is still the client's current one, so
 * connections that hit the same expiry share one `/refresh`.
 * @see https://jsforce.github.io/document/#access-token-with-refresh-token
 */
export function jsforceRefreshFn(
  client: BrokerClient,
): (
  connection: JsforceConnection,
  callback: (error: Error | null, accessToken?: string) => void,
) => void {
  return (connection, callback) => {
    const held = client.peek();
    if (held && held.accessToken === connection.accessToken) client.invalidate(held.version);
    client.getAccessToken().then(
      (token) => {
        // An org migration moves the instance: later requests go to the new one.
        if (connection.instanceUrl !== token.instanceUrl)
          connection.instanceUrl = token.instanceUrl;
        callback(null, token.accessToken);
      },
      (error: Error) => callback(error),
    );
  };
}
