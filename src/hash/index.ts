/** Hashing: SHA-256 and HMAC in memory and as a stream (`sha256`), files and chunk trees (`file`). */
export {
  DEFAULT_CHUNK_SIZE,
  type HashFileOptions,
  type HashFileResult,
  hashFile,
} from './file';
export {
  type BinaryInput,
  createSha256,
  type DigestEncoding,
  hmacSha256,
  type InputEncoding,
  Sha256,
  sha256,
  sha256Many,
  sha256ManyHex,
} from './sha256';
