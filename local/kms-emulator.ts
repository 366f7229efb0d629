/**
 * Local KMS emulator (AWS JSON 1.1, X-Amz-Target `TrentService.<Op>`), for the real
 * `@aws-sdk/client-kms` pointed at it via `endpoint` or `AWS_ENDPOINT_URL_KMS`.
 *
 * Operations: GenerateDataKey, Encrypt, Decrypt, DescribeKey (symmetric keys only).
 *
 * CiphertextBlob = version byte | key id (36 ASCII) | IV (12) | GCM tag (16) | ciphertext,
 * AES-256-GCM under a random per-key master key held in memory. The AAD binds the version byte,
 * the key ARN and the canonical (sorted-keys) encryption context, so decrypting with a
 * different/missing context, a flipped bit, or a blob whose key id was swapped fails with
 * InvalidCiphertextException, as in AWS. As in AWS, Decrypt with an explicit KeyId other than
 * the blob's key fails with IncorrectKeyException.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import {
  AwsJsonError,
  type EmulatorFault,
  type JsonObject,
  readBlob,
  readBoolean,
  readEnum,
  readInt,
  readString,
  readStringList,
  readStringMap,
  startAwsJsonServer,
  validationError,
} from './aws-json-server.ts';

export type { EmulatorFault } from './aws-json-server.ts';

import type { AwsJsonServer } from './aws-json-server.ts';

export interface KmsEmulator {
  readonly url: string;
  readonly calls: Record<string, number>;
  resetCalls(): void;
  createKey(opts?: { alias?: string }): string;
  setKeyEnabled(keyId: string, enabled: boolean): void;
  inject(fault: EmulatorFault): void;
  clearFaults(): void;
  close(): Promise<void>;
}

export const KMS_REGION = 'us-east-1';
export const KMS_ACCOUNT_ID = '000000000000';

const ARN_PREFIX = `arn:aws:kms:${KMS_REGION}:${KMS_ACCOUNT_ID}:`;
const BLOB_VERSION = 0x01;
const KEY_ID_LENGTH = 36;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const HEADER_LENGTH = 1 + KEY_ID_LENGTH + IV_LENGTH + TAG_LENGTH;
const ALGORITHMS = [
  'SYMMETRIC_DEFAULT',
  'RSAES_OAEP_SHA_1',
  'RSAES_OAEP_SHA_256',
  'SM2PKE',
] as const;
const ALIAS_PATTERN = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;

interface KmsKey {
  readonly id: string;
  readonly arn: string;
  readonly material: Buffer;
  readonly created: Date;
  enabled: boolean;
}

export async function startKmsEmulator(
  opts: { port?: number; host?: string } = {},
): Promise<KmsEmulator> {
  const keys = new Map<string, KmsKey>();
  const aliases = new Map<string, string>();

  const resolveKey = (keyId: string): KmsKey => {
    let ref = keyId;
    if (ref.startsWith('arn:')) {
      if (!ref.startsWith(ARN_PREFIX)) throw notFound(keyId);
      ref = ref.slice(ARN_PREFIX.length);
      if (ref.startsWith('key/')) ref = ref.slice('key/'.length);
      else if (!ref.startsWith('alias/')) throw notFound(keyId);
    }
    if (ref.startsWith('alias/')) {
      const id = aliases.get(ref);
      const key = id === undefined ? undefined : keys.get(id);
      if (key === undefined) {
        throw new AwsJsonError('NotFoundException', `Alias ${ARN_PREFIX}${ref} is not found.`);
      }
      return key;
    }
    const key = keys.get(ref);
    if (key === undefined) throw notFound(keyId);
    return key;
  };

  const usableKey = (keyId: string): KmsKey => {
    const key = resolveKey(keyId);
    if (!key.enabled) throw new AwsJsonError('DisabledException', `${key.arn} is disabled.`);
    return key;
  };

  const checkDryRun = (input: JsonObject): void => {
    if (readBoolean(input, 'DryRun') === true) {
      throw new AwsJsonError(
        'DryRunOperationException',
        'The request would have succeeded, but the DryRun option is set.',
        412,
      );
    }
  };

  const checkAlgorithm = (input: JsonObject): void => {
    const algorithm = readEnum(input, 'EncryptionAlgorithm', ALGORITHMS);
    if (algorithm !== undefined && algorithm !== 'SYMMETRIC_DEFAULT') {
      throw new AwsJsonError(
        'InvalidKeyUsageException',
        `The encryption algorithm ${algorithm} is not compatible with the type of key spec.`,
      );
    }
  };

  const server = await startAwsJsonServer(
    {
      targetPrefix: 'TrentService',
      faultError(kind, operation) {
        switch (kind) {
          case 'throttle':
            return new AwsJsonError('ThrottlingException', 'Rate exceeded');
          case 'internal':
            return new AwsJsonError(
              'KMSInternalException',
              'The request was rejected because an internal exception occurred.',
              500,
            );
          case 'disabled':
            return new AwsJsonError('DisabledException', 'The key is disabled.');
          case 'access-denied':
            return new AwsJsonError(
              'AccessDeniedException',
              `User: arn:aws:sts::${KMS_ACCOUNT_ID}:assumed-role/local/emulator is not authorized to perform: kms:${operation} because no identity-based policy allows the kms:${operation} action`,
            );
        }
      },
      operations: {
        GenerateDataKey(input) {
          const keyId = readString(input, 'KeyId', { required: true, min: 1, max: 2048 });
          const keySpec = readEnum(input, 'KeySpec', ['AES_256', 'AES_128'] as const);
          const numberOfBytes = readInt(input, 'NumberOfBytes', { min: 1, max: 1024 });
          const context = readStringMap(input, 'EncryptionContext') ?? {};
          readStringList(input, 'GrantTokens', { max: 10 });
          if ((keySpec === undefined) === (numberOfBytes === undefined)) {
            throw validationError('Please specify either number of bytes or key spec.');
          }
          const key = usableKey(keyId);
          checkDryRun(input);
          const plaintext = randomBytes(numberOfBytes ?? (keySpec === 'AES_128' ? 16 : 32));
          return {
            KeyId: key.arn,
            Plaintext: plaintext.toString('base64'),
            CiphertextBlob: seal(key, plaintext, context).toString('base64'),
          };
        },
        Encrypt(input) {
          const keyId = readString(input, 'KeyId', { required: true, min: 1, max: 2048 });
          const plaintext = readBlob(input, 'Plaintext', { required: true, min: 1, max: 4096 });
          const context = readStringMap(input, 'EncryptionContext') ?? {};
          readStringList(input, 'GrantTokens', { max: 10 });
          checkAlgorithm(input);
          const key = usableKey(keyId);
          checkDryRun(input);
          return {
            KeyId: key.arn,
            CiphertextBlob: seal(key, plaintext, context).toString('base64'),
            EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          };
        },
        Decrypt(input) {
          const blob = readBlob(input, 'CiphertextBlob', { required: true, min: 1, max: 6144 });
          const keyId = readString(input, 'KeyId', { min: 1, max: 2048 });
          const context = readStringMap(input, 'EncryptionContext') ?? {};
          readStringList(input, 'GrantTokens', { max: 10 });
          checkAlgorithm(input);
          if (blob.length < HEADER_LENGTH || blob[0] !== BLOB_VERSION) throw invalidCiphertext();
          const blobKey = keys.get(blob.subarray(1, 1 + KEY_ID_LENGTH).toString('latin1'));
          if (blobKey === undefined) throw invalidCiphertext();
          if (keyId !== undefined && resolveKey(keyId) !== blobKey) {
            throw new AwsJsonError(
              'IncorrectKeyException',
              'The key ID in the request does not identify a CMK that can perform this operation.',
            );
          }
          const key = usableKey(blobKey.id);
          const plaintext = open(key, blob, context);
          checkDryRun(input);
          return {
            KeyId: key.arn,
            Plaintext: plaintext.toString('base64'),
            EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          };
        },
        DescribeKey(input) {
          const keyId = readString(input, 'KeyId', { required: true, min: 1, max: 2048 });
          readStringList(input, 'GrantTokens', { max: 10 });
          const key = resolveKey(keyId);
          return {
            KeyMetadata: {
              AWSAccountId: KMS_ACCOUNT_ID,
              KeyId: key.id,
              Arn: key.arn,
              CreationDate: key.created.getTime() / 1000,
              Enabled: key.enabled,
              Description: '',
              KeyUsage: 'ENCRYPT_DECRYPT',
              KeyState: key.enabled ? 'Enabled' : 'Disabled',
              Origin: 'AWS_KMS',
              KeyManager: 'CUSTOMER',
              CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
              KeySpec: 'SYMMETRIC_DEFAULT',
              EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
              MultiRegion: false,
            },
          };
        },
      },
    },
    opts,
  );

  // The server's own controls (url, calls, faults, close), plus this service's seeding.
  const seeding: Omit<KmsEmulator, keyof AwsJsonServer> = {
    createKey(createOpts = {}) {
      const { alias } = createOpts;
      if (alias !== undefined) {
        if (!ALIAS_PATTERN.test(alias) || alias.startsWith('alias/aws/')) {
          throw new Error(
            `createKey: invalid alias '${alias}' (expected e.g. 'alias/token-broker')`,
          );
        }
        if (aliases.has(alias)) throw new Error(`createKey: alias '${alias}' already exists`);
      }
      const id = randomUUID();
      const key: KmsKey = {
        id,
        arn: `${ARN_PREFIX}key/${id}`,
        material: randomBytes(32),
        created: new Date(),
        enabled: true,
      };
      keys.set(id, key);
      if (alias !== undefined) aliases.set(alias, id);
      return key.arn;
    },
    setKeyEnabled(keyId, enabled) {
      let key: KmsKey;
      try {
        key = resolveKey(keyId);
      } catch {
        throw new Error(`setKeyEnabled: unknown key '${keyId}'`);
      }
      key.enabled = enabled;
    },
  };
  return Object.assign(server, seeding);
}

function notFound(keyId: string): AwsJsonError {
  const arn = keyId.startsWith('arn:') ? keyId : `${ARN_PREFIX}key/${keyId}`;
  return new AwsJsonError('NotFoundException', `Key '${arn}' does not exist`);
}

function invalidCiphertext(): AwsJsonError {
  return new AwsJsonError('InvalidCiphertextException', 'The ciphertext is invalid.');
}

/** Canonical AAD: version byte, key ARN and the encryption context with sorted keys. */
function aad(key: KmsKey, context: Record<string, string>): Buffer {
  const entries = Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify([BLOB_VERSION, key.arn, entries]), 'utf8');
}

function seal(key: KmsKey, plaintext: Buffer, context: Record<string, string>): Buffer {
  const iv = randomBytes(IV_LENGTH);
  const cipher = createCipheriv('aes-256-gcm', key.material, iv, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aad(key, context));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([
    Buffer.from([BLOB_VERSION]),
    Buffer.from(key.id, 'latin1'),
    iv,
    cipher.getAuthTag(),
    body,
  ]);
}

function open(key: KmsKey, blob: Buffer, context: Record<string, string>): Buffer {
  let offset = 1 + KEY_ID_LENGTH;
  const iv = blob.subarray(offset, offset + IV_LENGTH);
  offset += IV_LENGTH;
  const tag = blob.subarray(offset, offset + TAG_LENGTH);
  offset += TAG_LENGTH;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.material, iv, {
      authTagLength: TAG_LENGTH,
    });
    decipher.setAAD(aad(key, context));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(blob.subarray(offset)), decipher.final()]);
  } catch {
    throw invalidCiphertext();
  }
}
