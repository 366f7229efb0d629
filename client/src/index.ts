/**
 * Client of the Salesforce token broker: `createBrokerClient`, the typed errors and
 * jsforce's `refreshFn`. No runtime dependencies; the IAM mode loads its own on first use.
 */
export {
  type AccessToken,
  type AwsCredentials,
  type BrokerClient,
  type BrokerClientOptions,
  type BrokerCredential,
  createBrokerClient,
  type IamCredentialOptions,
} from './client.js';
export {
  BrokerError,
  ForbiddenError,
  ReauthenticationRequiredError,
  SessionEndedError,
  TemporarilyUnavailableError,
} from './errors.js';
export { jsforceRefreshFn } from './jsforce.js';
