import {
  DecryptCommand,
  GenerateDataKeyCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  KMSClient,
} from '@aws-sdk/client-kms';
import { SessionIntegrityError } from '../broker/errors.ts';
import type { CallOptions, DataKey, DataKeyService } from '../broker/ports.ts';
import { ENCRYPTION_PURPOSE } from '../shared/constants.ts';
import { awsUnavailable } from './errors.ts';

export { ENCRYPTION_PURPOSE };

/**
 * {@link DataKeyService} on AWS KMS. The encryption context binds each data key to one
 * session, so KMS refuses to decrypt a data key copied to another session's item.
 * @see https://docs.aws.amazon.com/kms/latest/APIReference/API_GenerateDataKey.html
 */
export class KmsDataKeys implements DataKeyService {
  readonly #client: KMSClient;
  readonly #keyId: string;

  constructor(options: { keyId: string; client?: KMSClient }) {
    this.#keyId = options.keyId;
    this.#client = options.client ?? new KMSClient({});
  }

  async generate(sessionKey: string, options?: CallOptions): Promise<DataKey> {
    try {
      const result = await this.#client.send(
        new GenerateDataKeyCommand({
          KeyId: this.#keyId,
          KeySpec: 'AES_256',
          EncryptionContext: encryptionContext(sessionKey),
        }),
        options?.timeoutMs === undefined
          ? {}
          : { abortSignal: AbortSignal.timeout(Math.max(1, options.timeoutMs)) },
      );
      if (!result.Plaintext || !result.CiphertextBlob) {
        throw new Error('GenerateDataKey response lacks "Plaintext" or "CiphertextBlob"');
      }
      return { plaintext: result.Plaintext, encrypted: result.CiphertextBlob };
    } catch (error) {
      throw awsUnavailable('KMS', error);
    }
  }

  async decrypt(encryptedDataKey: Uint8Array, sessionKey: string): Promise<Uint8Array> {
    try {
      const result = await this.#client.send(
        new DecryptCommand({
          KeyId: this.#keyId,
          CiphertextBlob: encryptedDataKey,
          EncryptionContext: encryptionContext(sessionKey),
        }),
      );
      if (!result.Plaintext) throw new Error('Decrypt response lacks "Plaintext"');
      return result.Plaintext;
    } catch (error) {
      // The blob does not belong to this key and session: a copied or damaged item.
      if (error instanceof InvalidCiphertextException || error instanceof IncorrectKeyException) {
        throw new SessionIntegrityError('The stored session is damaged.', { cause: error });
      }
      throw awsUnavailable('KMS', error);
    }
  }
}

function encryptionContext(sessionKey: string): Record<string, string> {
  return { purpose: ENCRYPTION_PURPOSE, session: sessionKey };
}
