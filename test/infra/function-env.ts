/**
 * Environment for running a broker function outside Lambda without reaching anything but
 * loopback: valid configuration, dummy credentials, and every AWS endpoint and the
 * Salesforce login URL pointed at a closed port on 127.0.0.1, so each call fails at once.
 */
export function dummyFunctionEnv(closedPort = 9): NodeJS.ProcessEnv {
  const loopback = `http://127.0.0.1:${closedPort}`;
  return {
    PATH: process.env.PATH,
    TABLE_NAME: 'token-broker-events',
    KMS_KEY_ID: 'arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-4000-8000-000000000000',
    CLIENT_SECRET_ID: 'token-broker/salesforce-client',
    SALESFORCE_LOGIN_URL: loopback,
    CALLBACK_URL: 'https://abc123defg.execute-api.eu-west-1.amazonaws.com/callback',
    ALLOWED_ORIGINS: 'https://app.example.com',
    RETURN_TO_PREFIXES: '/app',
    CLIENT_APPS: '[{"client_id":"ios","redirect_uris":["com.example.app:/oauth2redirect"]}]',
    POWERTOOLS_SERVICE_NAME: 'token-broker-events',
    POWERTOOLS_METRICS_NAMESPACE: 'TokenBroker',
    POWERTOOLS_METRICS_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    LOG_LEVEL: 'SILENT',
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_MAX_ATTEMPTS: '1',
    AWS_ENDPOINT_URL: loopback,
    AWS_ENDPOINT_URL_DYNAMODB: loopback,
    AWS_ENDPOINT_URL_KMS: loopback,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: loopback,
    AWS_ENDPOINT_URL_EVENTBRIDGE: loopback,
    EVENT_BUS_NAME: 'arn:aws:events:eu-west-1:111111111111:event-bus/token-broker-events',
  };
}
