import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SessionIntegrityError } from './errors.ts';
import type { CallOptions, DataKey, DataKeyService, SealedTokenSet, TokenSet } from './ports.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Envelope encryption of token sets (README "Encryption at rest"): a KMS data key,
 * bound to the session by the encryption context, encrypts the token set with
 * AES-256-GCM; the additional data binds the ciphertext to the session key and version,
 * so a ciphertext copied to another row, or an old version replayed, fails to open.
 * @see https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#enveloping
 */
export class TokenVault {
  readonly #dataKeys: DataKeyService;

  constructor(dataKeys: DataKeyService) {
    this.#dataKeys = dataKeys;
  }

  /** One `GenerateDataKey` call; start it early, it only depends on the session key. */
  generateDataKey(sessionKey: string, options?: CallOptions): Promise<DataKey> {
    return this.#dataKeys.generate(sessionKey, options);
  }

  seal(dataKey: DataKey, sessionKey: string, version: number, tokens: TokenSet): SealedTokenSet {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', dataKey.plaintext, iv);
    cipher.setAAD(additionalData(sessionKey, version));
    const body = Buffer.concat([cipher.update(JSON.stringify(tokens), 'utf8'), cipher.final()]);
    return {
      ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]),
      encryptedDataKey: dataKey.encrypted,
    };
  }

  /**
   * One `Decrypt` call. Throws {@link SessionIntegrityError} when the data key or the
   * ciphertext does not belong to this session and version.
   */
  async open(sealed: SealedTokenSet, sessionKey: string, version: number): Promise<TokenSet> {
    return (await this.openWithKey(sealed, sessionKey, version)).tokens;
  }

  /**
   * Like {@link open}, and also returns the session's data key, so a refresh can seal the
   * next version with it when KMS cannot hand out a new one after Salesforce has already
   * rotated the refresh token. Reusing a data key is safe here: every seal draws a fresh
   * random IV, and the additional data binds each ciphertext to its version.
   */
  async openWithKey(
    sealed: SealedTokenSet,
    sessionKey: string,
    version: number,
  ): Promise<{ tokens: TokenSet; dataKey: DataKey }> {
    const key = await this.#dataKeys.decrypt(sealed.encryptedDataKey, sessionKey);
    const blob = Buffer.from(sealed.ciphertext);
    if (blob.length <= IV_BYTES + TAG_BYTES) {
      throw new SessionIntegrityError('The stored session is damaged.');
    }
    let plaintext: string;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, blob.subarray(0, IV_BYTES));
      decipher.setAAD(additionalData(sessionKey, version));
      decipher.setAuthTag(blob.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      plaintext = Buffer.concat([
        decipher.update(blob.subarray(IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ]).toString('utf8');
    } catch (cause) {
      throw new SessionIntegrityError('The stored session is damaged.', { cause });
    }
    return {
      tokens: parseTokenSet(plaintext),
      dataKey: { plaintext: key, encrypted: sealed.encryptedDataKey },
    };
  }
}

function additionalData(sessionKey: string, version: number): Buffer {
  return Buffer.from(`salesforce-token|${sessionKey}|${version}`, 'utf8');
}

function parseTokenSet(plaintext: string): TokenSet {
  let value: unknown;
  try {
    value = JSON.parse(plaintext);
  } catch (cause) {
    throw new SessionIntegrityError('The stored session is damaged.', { cause });
  }
  const fields = [
    'accessToken',
    'refreshToken',
    'instanceUrl',
    'issuedAt',
    'scope',
    'identityUrl',
  ] as const;
  if (typeof value !== 'object' || value === null) {
    throw new SessionIntegrityError('The stored session is damaged.');
  }
  const record = value as Record<string, unknown>;
  for (const field of fields) {
    if (typeof record[field] !== 'string') {
      throw new SessionIntegrityError(`The stored session lacks "${field}".`);
    }
  }
  return record as unknown as TokenSet;
}
