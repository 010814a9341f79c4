/**
 * gRPC server reflection (v1 and v1alpha) so operators can use grpcurl without the protos. The
 * descriptors come from the shipped proto/ directory, the same files the code is generated from,
 * plus grpc.health.v1 from grpc-health-check.
 */
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';

/** proto/ at the package root: two levels up from src/server/ (and from dist/server/). */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));

export function createReflection(): ReflectionService {
  const definition = loadSync(['credbroker/v1/broker.proto', 'credbroker/v1/errors.proto', healthProtoPath], {
    includeDirs: [PROTO_DIR],
  });
  return new ReflectionService(definition);
}
