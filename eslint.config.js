// @ts-check
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'src/gen/**',
      'dist/**',
      '.tmp/**',
      'node_modules/**',
      'examples/**',
      'test/polyglot/.gen/**',
      'coverage/**',
    ],
  },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The CLI, benchmarks, demo and test helpers talk to a terminal.
    files: ['src/cli.ts', 'src/cli/**', 'bench/**', 'scripts/**', 'test/**', 'src/dev/**'],
    rules: { 'no-console': 'off' },
  },
  {
    // Dependency direction (docs/architecture.md): server → broker → core ← store, idp.
    files: ['src/core/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ group: ['../*', '!../core/*'], message: 'src/core imports nothing outside itself.' }],
        },
      ],
    },
  },
  {
    files: ['src/broker/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../store/*', '../idp/*', '../server/*', '../config/*', '../app.js', '../main.js'],
              message: 'The domain depends only on src/core ports (docs/architecture.md).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/store/**', 'src/idp/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../broker/*', '../server/*', '../app.js', '../main.js'],
              message: 'Adapters implement src/core ports; they never import the domain or the server.',
            },
          ],
        },
      ],
    },
  },
);
