/** Loading a configuration in unit tests: YAML text, environment and files, all in memory. */
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config/load.js';

/** Loads `yaml` as the file `c.yaml`; `files` answers the `*_file` settings, anything else is ENOENT. */
export function loadYaml(yaml: string, env: Record<string, string> = {}, files: Record<string, string> = {}) {
  return loadConfig({
    env,
    file: 'c.yaml',
    readFile: (path) => {
      if (path === 'c.yaml') return yaml;
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return text;
    },
  });
}

/** The problems of the ConfigError `fn` throws; fails the test when it throws none or another error. */
export function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}
