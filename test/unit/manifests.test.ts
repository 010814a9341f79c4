import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, type Config } from '../../src/config/load.js';
import { DEFAULT_HEALTH_LISTEN, DEFAULT_LISTEN, DEFAULT_METRICS_LISTEN } from '../../src/config/schema.js';
import { API_SERVICE_NAME, OVERALL } from '../../src/server/health.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes objects are untyped YAML here. */
type K8s = any;

const ROOT = new URL('../../', import.meta.url).pathname;
const K8S_DIR = join(ROOT, 'deploy/kubernetes');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const portOf = (listen: string) => Number(listen.slice(listen.lastIndexOf(':') + 1));
const API_PORT = portOf(DEFAULT_LISTEN);
const HEALTH_PORT = portOf(DEFAULT_HEALTH_LISTEN);
const METRICS_PORT = portOf(DEFAULT_METRICS_LISTEN);
const version = (JSON.parse(read('package.json')) as { version: string }).version;

function loadManifests(): K8s[] {
  const objects: K8s[] = [];
  for (const file of readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'))) {
      assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const object = doc.toJS() as K8s;
      if (object !== null) objects.push({ ...object, __file: file });
    }
  }
  return objects;
}

const objects = loadManifests();
const one = (kind: string, name?: string): K8s => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0];
};
const deployment = one('Deployment', 'credbroker');
const pod = deployment.spec.template.spec;
const podLabels: Record<string, string> = deployment.spec.template.metadata.labels;
const container = pod.containers.find((c: K8s) => c.name === 'credbroker');
const matches = (selector: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => podLabels[k] === v);

/** The configuration exactly as a pod would load it, secret files replaced by placeholders. */
function podConfig(): { config: Config; filesRead: string[] } {
  const env: Record<string, string> = {};
  for (const e of container.env as K8s[]) {
    env[e.name] =
      e.value ?? (e.valueFrom?.secretKeyRef ? 'k1:' + Buffer.alloc(32, 7).toString('base64') : '');
  }
  const configMap = one('ConfigMap', 'credbroker-config');
  const filesRead: string[] = [];
  const config = loadConfig({
    env,
    readFile: (path) => {
      filesRead.push(path);
      const mount = (container.volumeMounts as K8s[]).find((m) => path.startsWith(`${m.mountPath}/`));
      assert.ok(mount, `${path} is inside a volume mount`);
      const volume = (pod.volumes as K8s[]).find((v) => v.name === mount.name);
      const file = posix.relative(mount.mountPath, path);
      if (volume.configMap) return configMap.data[file] as string;
      assert.ok(volume.secret, `${path} comes from a Secret`);
      assert.ok(
        volume.secret.items === undefined || volume.secret.items.some((i: K8s) => i.path === file),
        `Secret ${volume.secret.secretName} projects ${file}`,
      );
      return 'placeholder-secret';
    },
  });
  return { config, filesRead };
}

/** Every (Secret name, key) the manifests reference. */
function secretReferences(): { name: string; key: string }[] {
  const refs: { name: string; key: string }[] = [];
  for (const e of container.env as K8s[]) {
    const ref = e.valueFrom?.secretKeyRef;
    if (ref) refs.push({ name: ref.name, key: ref.key });
  }
  for (const v of pod.volumes as K8s[]) {
    if (!v.secret) continue;
    assert.ok(v.secret.items, `volume ${v.name}: list the Secret's keys (items) so they are documented`);
    for (const item of v.secret.items) refs.push({ name: v.secret.secretName, key: item.key });
  }
  return refs;
}

describe('Kubernetes manifests (deploy/kubernetes)', () => {
  it('parse as YAML and include a Deployment, Services, a PodDisruptionBudget, a NetworkPolicy and a ConfigMap', () => {
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'NetworkPolicy', 'ConfigMap']) {
      assert.ok(kinds.has(kind), `${kind} present`);
    }
    const kustomization = parse(readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8')) as K8s;
    const files = new Set(objects.map((o) => o.__file).filter((f) => f !== 'kustomization.yaml'));
    assert.deepEqual(new Set(kustomization.resources), files, 'kustomization lists every manifest');
  });

  it('runs 3 replicas of the image version in package.json, spread across nodes and zones', () => {
    assert.equal(deployment.spec.replicas, 3);
    assert.equal(container.image, `credbroker:${version}`);
    const keys = (pod.topologySpreadConstraints as K8s[]).map((c) => c.topologyKey);
    assert.ok(keys.includes('kubernetes.io/hostname') && keys.includes('topology.kubernetes.io/zone'));
    for (const c of pod.topologySpreadConstraints) assert.ok(matches(c.labelSelector.matchLabels));
    assert.ok(matches(deployment.spec.selector.matchLabels));
  });

  it('probes with native gRPC on the plaintext health port: liveness "" and readiness the API service', () => {
    const { config } = podConfig();
    assert.equal(portOf(config.health_listen), HEALTH_PORT);
    for (const probe of [container.livenessProbe, container.startupProbe]) {
      assert.equal(probe.grpc.port, HEALTH_PORT);
      assert.equal(probe.grpc.service ?? '', OVERALL);
    }
    assert.equal(container.readinessProbe.grpc.port, HEALTH_PORT);
    assert.equal(container.readinessProbe.grpc.service, API_SERVICE_NAME);
    const ports = Object.fromEntries((container.ports as K8s[]).map((p) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { grpc: API_PORT, health: HEALTH_PORT, metrics: METRICS_PORT });
    assert.equal(portOf(config.listen), API_PORT);
    assert.equal(portOf(config.metrics_listen), METRICS_PORT);
    assert.equal(deployment.spec.template.metadata.annotations['prometheus.io/port'], String(METRICS_PORT));
  });

  it('runs as non-root with a read-only root file system, no capabilities and no privilege escalation', () => {
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.notEqual(pod.securityContext.runAsUser, 0);
    const sc = container.securityContext;
    assert.equal(sc.runAsNonRoot, true);
    assert.notEqual(sc.runAsUser, 0);
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(pod.automountServiceAccountToken, false);
    const tmp = (container.volumeMounts as K8s[]).find((m) => m.mountPath === '/tmp');
    assert.ok(tmp && pod.volumes.find((v: K8s) => v.name === tmp.name).emptyDir, '/tmp is an emptyDir');
    for (const kind of ['requests', 'limits']) {
      assert.ok(container.resources[kind].cpu && container.resources[kind].memory, `resources.${kind}`);
    }
  });

  it('loads its configuration from the ConfigMap and Secret mounts, and drains within the grace period', () => {
    const { config, filesRead } = podConfig();
    assert.equal(config.providers.length, 1);
    assert.ok(config.tls?.client_ca_file, 'the API port requires mutual TLS');
    assert.ok(config.store.redis_url, 'replicas share Redis');
    assert.ok(
      filesRead.some((f) => f.endsWith('/client-secret')),
      'the client secret comes from a file',
    );
    for (const path of [
      config.tls!.cert_file,
      config.tls!.key_file,
      config.tls!.client_ca_file!,
      config.store.redis_password_file!,
    ]) {
      // The same resolver as loadConfig's: must land on a projected Secret item.
      const mount = (container.volumeMounts as K8s[]).find((m) => path.startsWith(`${m.mountPath}/`));
      const volume = (pod.volumes as K8s[]).find((v) => v.name === mount?.name);
      assert.ok(
        volume?.secret?.items.some((i: K8s) => i.path === posix.relative(mount.mountPath, path)),
        path,
      );
    }
    const envNames = (container.env as K8s[]).map((e) => e.name);
    assert.ok(envNames.includes('CREDBROKER_KEYS') && envNames.includes('CREDBROKER_SHUTDOWN_DELAY'));
    assert.ok(config.log_user_hash_key, 'user ids in logs are hashed with a key of their own (a Secret)');
    assert.ok(
      pod.terminationGracePeriodSeconds * 1000 > config.shutdown_delay + config.shutdown_grace,
      'terminationGracePeriodSeconds exceeds shutdown_delay + shutdown_grace',
    );
  });

  it('documents every referenced Secret key in docs/operations.md', () => {
    const docs = read('docs/operations.md');
    const refs = secretReferences();
    assert.ok(refs.length >= 5);
    for (const { name, key } of refs) {
      const line = docs.split('\n').find((l) => l.includes(`\`${name}\``) && l.includes(`\`${key}\``));
      assert.ok(line, `docs/operations.md names Secret ${name} key ${key} on one line`);
    }
  });

  it('selects the broker pods from the Services, the PodDisruptionBudget and the NetworkPolicy', () => {
    const portNames = new Set((container.ports as K8s[]).map((p) => p.name));
    for (const service of objects.filter((o) => o.kind === 'Service')) {
      assert.ok(matches(service.spec.selector), service.metadata.name);
      for (const p of service.spec.ports) assert.ok(portNames.has(p.targetPort), `${p.targetPort} exists`);
    }
    const pdb = one('PodDisruptionBudget');
    assert.ok(matches(pdb.spec.selector.matchLabels));
    assert.ok(pdb.spec.maxUnavailable < deployment.spec.replicas);
    const policy = one('NetworkPolicy');
    assert.ok(matches(policy.spec.podSelector.matchLabels));
    const ingressPorts = (policy.spec.ingress as K8s[]).flatMap((r) => r.ports.map((p: K8s) => p.port));
    assert.deepEqual(new Set(ingressPorts), new Set([API_PORT, HEALTH_PORT, METRICS_PORT]));
  });
});

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const instruction = (name: string) =>
    runtime
      .split('\n')
      .filter((l) => l.startsWith(`${name} `))
      .map((l) => l.slice(name.length + 1).trim());

  it('builds on Node 22 in two stages, with production dependencies only at runtime', () => {
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:22-bookworm-slim$/m);
    assert.equal(dockerfile.match(/^FROM /gm)?.length, 2);
    assert.match(runtime, /npm ci --omit=dev/);
    assert.match(runtime, /COPY --from=build \/app\/dist \.\/dist/);
    assert.match(runtime, /COPY proto \.\/proto/);
  });

  it('exposes the default ports, runs non-root and starts with node in exec form', () => {
    assert.deepEqual(instruction('EXPOSE'), [`${API_PORT} ${HEALTH_PORT} ${METRICS_PORT}`]);
    const [user] = instruction('USER');
    assert.match(user!, /^\d+:\d+$/, 'numeric, so runAsNonRoot can be verified');
    assert.notEqual(Number(user!.split(':')[0]), 0);
    assert.equal(Number(user!.split(':')[0]), container.securityContext.runAsUser);
    assert.deepEqual(JSON.parse(instruction('CMD')[0]!), ['node', 'dist/cli.js', 'serve']);
    assert.match(runtime, /HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "dist\/cli.js", "healthcheck"/);
  });

  it('builds a production module graph that never imports the dev mode', () => {
    const sources = (readdirSync(join(ROOT, 'src'), { recursive: true }) as string[]).filter(
      (f) => f.endsWith('.ts') && !f.startsWith('dev/') && !f.startsWith('gen/'),
    );
    assert.ok(sources.length > 20);
    for (const file of sources) {
      assert.doesNotMatch(read(`src/${file}`), /from '(\.\.?\/)+dev\/|import\('(\.\.?\/)+dev\//, file);
    }
  });

  it('keeps development code and local files out of the build context', () => {
    const ignore = read('.dockerignore')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(ignore[0], '*', 'allow-list');
    assert.ok(ignore.includes('src/dev'));
  });
});

describe('deploy/compose.yaml', () => {
  const compose = parse(read('deploy/compose.yaml'), { merge: true }) as K8s; // Compose honours YAML merge keys

  it('runs two broker replicas on one Redis that persists and never evicts', () => {
    const brokers = Object.entries(compose.services as Record<string, K8s>).filter(([name]) =>
      name.startsWith('broker'),
    );
    assert.equal(brokers.length, 2);
    for (const [, broker] of brokers) {
      assert.equal(broker.environment.CREDBROKER_REDIS_URL, 'redis://redis:6379');
      assert.equal(broker.read_only, true);
      assert.match(broker.user, /^[1-9]\d*:/);
      const containerPorts = (broker.ports as string[]).map((p) => Number(p.split(':').at(-1)));
      assert.deepEqual(containerPorts, [API_PORT, HEALTH_PORT, METRICS_PORT]);
      for (const p of broker.ports as string[])
        assert.ok(p.startsWith('127.0.0.1:'), 'published on loopback');
    }
    const redis = (compose.services.redis.command as string[]).join(' ');
    assert.match(redis, /--appendonly yes/);
    assert.match(redis, /--maxmemory-policy noeviction/);
  });
});
