/**
 * Local KMS and Secrets Manager emulators speaking the AWS JSON 1.1 protocol, for the real
 * `@aws-sdk/client-kms` / `@aws-sdk/client-secrets-manager` clients (dummy credentials,
 * `endpoint: emulator.url` or `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
 */
export type { EmulatorFault } from './aws-json-server.ts';
export type { KmsEmulator } from './kms-emulator.ts';
export { KMS_ACCOUNT_ID, KMS_REGION, startKmsEmulator } from './kms-emulator.ts';
export type { SecretsManagerEmulator } from './secrets-manager-emulator.ts';
export {
  SECRETS_MANAGER_ACCOUNT_ID,
  SECRETS_MANAGER_REGION,
  startSecretsManagerEmulator,
} from './secrets-manager-emulator.ts';
