/**
 * docs/configuration.md must describe every setting the schema accepts, with the default the
 * schema applies: a setting added to src/config/schema.ts without its row, or a default changed
 * in one place only, fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';
import { parseDuration } from '../../src/config/duration.js';

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

interface Leaf {
  /** `store.cache.max_entries`, `providers[].downstreams[].audience` */
  readonly path: string;
  /** The path of the innermost array the leaf sits in (`providers[]`), or '' */
  readonly arrayPath: string;
  readonly key: string;
}

/** Unwraps optional/default/prefault/pipe/refinement wrappers down to the shape-bearing schema. */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  for (;;) {
    const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
    if (
      def.type === 'optional' ||
      def.type === 'default' ||
      def.type === 'prefault' ||
      def.type === 'nullable'
    ) {
      schema = def.innerType as z.core.$ZodType;
    } else if (def.type === 'pipe') {
      schema = def.in as z.core.$ZodType;
    } else {
      return schema;
    }
  }
}

function leaves(schema: z.core.$ZodType, prefix: string, arrayPath: string, out: Leaf[]): Leaf[] {
  const inner = unwrap(schema);
  const def = inner._zod.def as unknown as Record<string, unknown> & { type: string };
  if (def.type === 'object') {
    for (const [key, child] of Object.entries(def.shape as Record<string, z.core.$ZodType>)) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      const before = out.length;
      leaves(child, path, arrayPath, out);
      if (out.length === before) out.push({ path, arrayPath, key });
    }
  } else if (def.type === 'array') {
    const element = unwrap(def.element as z.core.$ZodType);
    if ((element._zod.def as { type: string }).type === 'object') {
      leaves(element, `${prefix}[]`, `${prefix}[]`, out);
    }
  }
  return out;
}

/** The text of the `## …` section whose heading names `` `arrayPath` ``. */
function sectionOf(arrayPath: string): string {
  const start = doc.indexOf(`(\`${arrayPath}\`)`);
  assert.notEqual(start, -1, `docs/configuration.md has no section headed (\`${arrayPath}\`)`);
  const next = doc.indexOf('\n## ', start);
  return doc.slice(start, next === -1 ? undefined : next);
}

const all = leaves(configSchema, '', '', []);

describe('docs/configuration.md', () => {
  it('finds the settings of the schema (the walk itself works)', () => {
    const paths = all.map((l) => l.path);
    for (const p of [
      'listen',
      'store.cache.max_entries',
      'providers[].client_id',
      'providers[].downstreams[].mode',
    ]) {
      assert.ok(paths.includes(p), `schema walk missed ${p}`);
    }
  });

  it('documents every setting', () => {
    const missing = all.filter((leaf) =>
      leaf.arrayPath === ''
        ? !doc.includes(`\`${leaf.path}\``)
        : !sectionOf(leaf.arrayPath).includes(`\`${leaf.key}\``),
    );
    assert.deepEqual(
      missing.map((l) => l.path),
      [],
      'settings without a row in docs/configuration.md',
    );
  });

  it('states the default the schema applies for every top-level and nested setting', () => {
    const defaults = configSchema.parse({}) as Record<string, unknown>;
    const valueAt = (path: string): unknown =>
      path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], defaults);
    // | `store.command_timeout` | `CREDBROKER_…` | `1s` | meaning |
    const row = /^\| `([a-z_.]+)` \| [^|]* \| `([^`]*)` \|/gm;
    let checked = 0;
    for (const [, path, documented] of doc.matchAll(row)) {
      const actual = valueAt(path!);
      if (actual === undefined) continue; // no default (required, or absent unless set)
      const expected =
        typeof actual === 'number' && parseDuration(documented!) !== undefined
          ? String(parseDuration(documented!))
          : documented!;
      assert.equal(
        String(actual),
        expected,
        `${path}: documented default \`${documented}\`, schema applies ${String(actual)}`,
      );
      checked += 1;
    }
    assert.ok(checked >= 15, `only ${checked} defaults were compared: the table format changed?`);
  });
});
