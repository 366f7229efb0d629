import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SessionIntegrityError } from '../../functions/broker/errors.ts';
import type { DataKey, DataKeyService } from '../../functions/broker/ports.ts';

/**
 * A {@link DataKeyService} that wraps data keys locally with AES-GCM and binds them to the
 * session key like KMS's encryption context does. Counts calls.
 */
export class MemoryDataKeys implements DataKeyService {
  readonly #master = randomBytes(32);
  readonly calls = { generate: 0, decrypt: 0 };

  async generate(sessionKey: string): Promise<DataKey> {
    this.calls.generate++;
    const plaintext = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#master, iv);
    cipher.setAAD(Buffer.from(sessionKey));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { plaintext, encrypted: Buffer.concat([iv, cipher.getAuthTag(), body]) };
  }

  async decrypt(encrypted: Uint8Array, sessionKey: string): Promise<Uint8Array> {
    this.calls.decrypt++;
    const blob = Buffer.from(encrypted);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#master, blob.subarray(0, 12));
      decipher.setAAD(Buffer.from(sessionKey));
      decipher.setAuthTag(blob.subarray(12, 28));
      return Buffer.concat([decipher.update(blob.subarray(28)), decipher.final()]);
    } catch (cause) {
      throw new SessionIntegrityError('The stored session is damaged.', { cause });
    }
  }
}
