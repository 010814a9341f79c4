# syntax=docker/dockerfile:1
# credbroker container image: a build stage that compiles TypeScript, and a runtime stage with
# production dependencies only, running as a non-root user on a read-only root file system.
#
#   docker build -t credbroker .
#   docker run --rm --read-only -p 50051:50051 -p 50052:50052 -p 9464:9464 \
#     -e CREDBROKER_CONFIG=/etc/credbroker/config.yaml -v ./config.yaml:/etc/credbroker/config.yaml:ro credbroker
#
# See docs/operations.md for the settings a deployment needs (Redis, keys, providers, callers).

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# Reflection and the health service load proto/ at runtime (../../proto from dist/server/).
COPY proto ./proto
# Numeric uid/gid of the image's `node` user, so the kubelet can verify runAsNonRoot. Files above
# stay root-owned and read-only to it: nothing is written outside /tmp.
USER 1000:1000
# 50051 API (credbroker.v1, grpc.health.v1, reflection) · 50052 plaintext grpc.health.v1 only ·
# 9464 Prometheus /metrics. Defaults of listen, health_listen and metrics_listen.
EXPOSE 50051 50052 9464
# Liveness of the whole server ("") on the plaintext health port (health_listen).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "dist/cli.js", "healthcheck", "--timeout", "3s"]
# node as PID 1 in exec form: SIGTERM reaches credbroker, which drains and exits 0.
CMD ["node", "dist/cli.js", "serve"]
