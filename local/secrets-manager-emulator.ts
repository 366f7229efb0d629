/**
 * Local Secrets Manager emulator (AWS JSON 1.1, X-Amz-Target `secretsmanager.<Op>`), for the
 * real `@aws-sdk/client-secrets-manager` pointed at it via `endpoint` or
 * `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
 *
 * Operations: GetSecretValue, PutSecretValue, CreateSecret, DescribeSecret.
 * Secrets are found by name, full ARN, or partial ARN (without the random 6-character suffix).
 * Staging labels move like AWS: a new AWSCURRENT version turns the old one into AWSPREVIOUS.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  AwsJsonError,
  type EmulatorFault,
  epochSeconds,
  type JsonObject,
  readBlob,
  readString,
  readStringList,
  startAwsJsonServer,
} from './aws-json-server.ts';

export type { EmulatorFault } from './aws-json-server.ts';

import type { AwsJsonServer } from './aws-json-server.ts';

export interface SecretsManagerEmulator {
  readonly url: string;
  readonly calls: Record<string, number>;
  resetCalls(): void;
  putSecret(name: string, value: string): string;
  inject(fault: EmulatorFault): void;
  clearFaults(): void;
  close(): Promise<void>;
}

export const SECRETS_MANAGER_REGION = 'us-east-1';
export const SECRETS_MANAGER_ACCOUNT_ID = '000000000000';

const ARN_PREFIX = `arn:aws:secretsmanager:${SECRETS_MANAGER_REGION}:${SECRETS_MANAGER_ACCOUNT_ID}:secret:`;
const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
const NAME_PATTERN = /^[A-Za-z0-9/_+=.@-]+$/;
const SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

interface SecretVersion {
  readonly id: string;
  readonly string: string | undefined;
  readonly binary: Buffer | undefined;
  readonly created: Date;
  readonly stages: Set<string>;
}

interface Secret {
  readonly name: string;
  readonly arn: string;
  readonly description: string | undefined;
  readonly created: Date;
  lastChanged: Date;
  readonly versions: Map<string, SecretVersion>;
}

type SecretValue = { string: string; binary?: undefined } | { string?: undefined; binary: Buffer };

export async function startSecretsManagerEmulator(
  opts: { port?: number; host?: string } = {},
): Promise<SecretsManagerEmulator> {
  const secrets = new Map<string, Secret>();

  const findSecret = (secretId: string): Secret | undefined => {
    const byName = secrets.get(secretId);
    if (byName !== undefined) return byName;
    if (!secretId.startsWith(ARN_PREFIX)) return undefined;
    for (const secret of secrets.values()) {
      if (secret.arn === secretId || `${ARN_PREFIX}${secret.name}` === secretId) return secret;
    }
    return undefined;
  };

  const resolveSecret = (secretId: string): Secret => {
    const secret = findSecret(secretId);
    if (secret === undefined) {
      throw new AwsJsonError(
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    }
    return secret;
  };

  const createSecret = (name: string, description: string | undefined): Secret => {
    const now = new Date();
    const secret: Secret = {
      name,
      arn: `${ARN_PREFIX}${name}-${randomSuffix()}`,
      description,
      created: now,
      lastChanged: now,
      versions: new Map(),
    };
    secrets.set(name, secret);
    return secret;
  };

  /** Adds a version, moving the given staging labels to it (AWSCURRENT -> AWSPREVIOUS). */
  const addVersion = (
    secret: Secret,
    value: SecretValue,
    versionId: string,
    stages: readonly string[],
  ): SecretVersion => {
    const version: SecretVersion = {
      id: versionId,
      string: value.string,
      binary: value.binary,
      created: new Date(),
      stages: new Set(),
    };
    const previousCurrent = stages.includes(CURRENT)
      ? [...secret.versions.values()].find((v) => v.stages.has(CURRENT))
      : undefined;
    for (const stage of stages) {
      for (const other of secret.versions.values()) other.stages.delete(stage);
      version.stages.add(stage);
    }
    if (previousCurrent !== undefined) {
      for (const other of secret.versions.values()) other.stages.delete(PREVIOUS);
      previousCurrent.stages.add(PREVIOUS);
    }
    secret.versions.set(versionId, version);
    secret.lastChanged = version.created;
    return version;
  };

  /** Idempotent version creation keyed by ClientRequestToken, like AWS. */
  const putVersion = (
    secret: Secret,
    value: SecretValue,
    token: string | undefined,
    stages: readonly string[],
  ): SecretVersion => {
    const existing = token === undefined ? undefined : secret.versions.get(token);
    if (existing !== undefined) {
      const same =
        existing.string === value.string &&
        (existing.binary === undefined || value.binary === undefined
          ? existing.binary === value.binary
          : existing.binary.equals(value.binary));
      if (!same) {
        throw new AwsJsonError(
          'ResourceExistsException',
          "You can't modify an existing version, you can only create a new version.",
        );
      }
      return existing;
    }
    return addVersion(secret, value, token ?? randomUUID(), stages);
  };

  const readValue = (input: JsonObject): SecretValue | undefined => {
    const string = readString(input, 'SecretString', { max: 65536 });
    const binary = readBlob(input, 'SecretBinary', { max: 65536 });
    if (string !== undefined && binary !== undefined) {
      throw new AwsJsonError(
        'InvalidParameterException',
        "You can't specify both a binary secret value and a string secret value in the same secret.",
      );
    }
    if (string !== undefined) return { string };
    if (binary !== undefined) return { binary };
    return undefined;
  };

  const server = await startAwsJsonServer(
    {
      targetPrefix: 'secretsmanager',
      faultError(kind, operation) {
        switch (kind) {
          case 'throttle':
            return new AwsJsonError('ThrottlingException', 'Rate exceeded');
          case 'internal':
            return new AwsJsonError(
              'InternalServiceError',
              'An error occurred on the server side.',
              500,
            );
          case 'disabled':
            return new AwsJsonError(
              'InvalidRequestException',
              "You can't perform this operation on the secret because it was marked for deletion.",
            );
          case 'access-denied':
            return new AwsJsonError(
              'AccessDeniedException',
              `User: arn:aws:sts::${SECRETS_MANAGER_ACCOUNT_ID}:assumed-role/local/emulator is not authorized to perform: secretsmanager:${operation} because no identity-based policy allows the secretsmanager:${operation} action`,
            );
        }
      },
      operations: {
        GetSecretValue(input) {
          const secretId = readString(input, 'SecretId', { required: true, min: 1, max: 2048 });
          const versionId = readString(input, 'VersionId', { min: 32, max: 64 });
          const versionStage = readString(input, 'VersionStage', { min: 1, max: 256 });
          const secret = resolveSecret(secretId);
          const version =
            versionId !== undefined
              ? secret.versions.get(versionId)
              : [...secret.versions.values()].find((v) => v.stages.has(versionStage ?? CURRENT));
          if (
            version === undefined ||
            (versionStage !== undefined && !version.stages.has(versionStage))
          ) {
            const what =
              versionId !== undefined
                ? `VersionId: ${versionId}`
                : `staging label: ${versionStage ?? CURRENT}`;
            throw new AwsJsonError(
              'ResourceNotFoundException',
              `Secrets Manager can't find the specified secret value for ${what}`,
            );
          }
          const out: JsonObject = {
            ARN: secret.arn,
            Name: secret.name,
            VersionId: version.id,
            VersionStages: [...version.stages],
            CreatedDate: epochSeconds(version.created),
          };
          if (version.string !== undefined) out.SecretString = version.string;
          if (version.binary !== undefined) out.SecretBinary = version.binary.toString('base64');
          return out;
        },
        PutSecretValue(input) {
          const secretId = readString(input, 'SecretId', { required: true, min: 1, max: 2048 });
          const token = readString(input, 'ClientRequestToken', { min: 32, max: 64 });
          const stages = readStringList(input, 'VersionStages', { min: 1, max: 20 }) ?? [CURRENT];
          const value = readValue(input);
          const secret = resolveSecret(secretId);
          if (value === undefined) {
            throw new AwsJsonError(
              'InvalidRequestException',
              'You must provide either SecretString or SecretBinary.',
            );
          }
          const version = putVersion(secret, value, token, stages);
          return {
            ARN: secret.arn,
            Name: secret.name,
            VersionId: version.id,
            VersionStages: [...version.stages],
          };
        },
        CreateSecret(input) {
          const name = readString(input, 'Name', { required: true, min: 1, max: 512 });
          const token = readString(input, 'ClientRequestToken', { min: 32, max: 64 });
          const description = readString(input, 'Description', { max: 2048 });
          const value = readValue(input);
          if (!NAME_PATTERN.test(name)) {
            throw new AwsJsonError(
              'InvalidParameterException',
              'Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!',
            );
          }
          if (secrets.has(name)) {
            throw new AwsJsonError(
              'ResourceExistsException',
              `The operation failed because the secret ${name} already exists.`,
            );
          }
          const secret = createSecret(name, description);
          const out: JsonObject = { ARN: secret.arn, Name: secret.name };
          if (value !== undefined) out.VersionId = putVersion(secret, value, token, [CURRENT]).id;
          return out;
        },
        DescribeSecret(input) {
          const secretId = readString(input, 'SecretId', { required: true, min: 1, max: 2048 });
          const secret = resolveSecret(secretId);
          const versionIdsToStages: Record<string, string[]> = {};
          for (const version of secret.versions.values()) {
            if (version.stages.size > 0) versionIdsToStages[version.id] = [...version.stages];
          }
          const out: JsonObject = {
            ARN: secret.arn,
            Name: secret.name,
            CreatedDate: epochSeconds(secret.created),
            LastChangedDate: epochSeconds(secret.lastChanged),
            VersionIdsToStages: versionIdsToStages,
          };
          if (secret.description !== undefined) out.Description = secret.description;
          return out;
        },
      },
    },
    opts,
  );

  // The server's own controls (url, calls, faults, close), plus this service's seeding.
  const seeding: Omit<SecretsManagerEmulator, keyof AwsJsonServer> = {
    putSecret(name, value) {
      let secret = findSecret(name);
      if (secret === undefined) {
        if (name.length > 512 || !NAME_PATTERN.test(name)) {
          throw new Error(`putSecret: invalid secret name '${name}'`);
        }
        secret = createSecret(name, undefined);
      }
      addVersion(secret, { string: value }, randomUUID(), [CURRENT]);
      return secret.arn;
    },
  };
  return Object.assign(server, seeding);
}

function randomSuffix(): string {
  return [...randomBytes(6)].map((b) => SUFFIX_ALPHABET[b % SUFFIX_ALPHABET.length]).join('');
}
