/**
 * A response message already encoded. A handler may answer with one instead of a message object;
 * the service definition's serializer (`passEncoded`, wrapped around the generated one in
 * server.ts) then hands its bytes to grpc-js as they are. GetValidSubjectToken answers a stored
 * token with the same bytes for as long as the record is unchanged, so those bytes are encoded
 * once per record rather than once per call: encoding the ≈ 1 KB response allocated four
 * ArrayBuffers per call (TextEncoder, the writer's chunks, finish, Buffer.from), the largest
 * cost of the broker's own that the allocation profile showed (docs/PERFORMANCE.md, third pass).
 * grpc-js copies the bytes into its own frame, so sharing them between calls is safe.
 */
import type { ServiceDefinition } from '@grpc/grpc-js';

export class EncodedResponse {
  constructor(readonly bytes: Buffer) {}
}

/**
 * Remembers one encoded response per key object (a stored record, GetTokenResult.served): an
 * entry lives exactly as long as its key is referenced elsewhere, so this holds nothing the
 * record cache has dropped.
 */
export class EncodedResponses<T> {
  private readonly byKey = new WeakMap<object, EncodedResponse>();

  constructor(private readonly encode: (message: T) => Uint8Array) {}

  /** The encoding of `message(from)`, computed on the first call for `key`. */
  of<F>(key: object, from: F, message: (from: F) => T): EncodedResponse {
    let encoded = this.byKey.get(key);
    if (encoded === undefined) {
      const bytes = this.encode(message(from));
      encoded = new EncodedResponse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      this.byKey.set(key, encoded);
    }
    return encoded;
  }
}

/** The service definition with serializers that pass an EncodedResponse's bytes through. */
export function passEncoded<T extends ServiceDefinition>(definition: T): T {
  const methods = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      responseSerialize: (value: unknown): Buffer =>
        value instanceof EncodedResponse ? value.bytes : method.responseSerialize(value),
    },
  ]);
  return Object.fromEntries(methods) as T;
}
