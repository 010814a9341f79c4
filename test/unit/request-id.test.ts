import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generateRequestId } from '../../src/server/call.js';

/** RFC 9562: version 8 in the 13th hex digit, variant 10xx in the 17th. */
const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('generated request ids', () => {
  it('are RFC 9562 UUIDv8 strings, distinct within a process', () => {
    const ids = Array.from({ length: 10_000 }, generateRequestId);
    for (const id of ids) assert.match(id, UUID_V8);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('differ between processes (a random part per process)', () => {
    const module = fileURLToPath(new URL('../../src/server/call.ts', import.meta.url));
    const script = `import { generateRequestId } from ${JSON.stringify(module)}; console.log(generateRequestId());`;
    const run = () =>
      execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        encoding: 'utf8',
      }).trim();
    const [a, b] = [run(), run()];
    assert.match(a, UUID_V8);
    // Both are their process's first id: only the random part can tell them apart.
    assert.equal(a.slice(24), b.slice(24));
    assert.notEqual(a, b);
  });
});
