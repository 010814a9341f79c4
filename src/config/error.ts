/**
 * ConfigError, on its own so that the serving process can name it without loading the
 * configuration's parser and schema (./load.ts; the `serve` command validates in a worker:
 * ./isolated.ts).
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** One line per problem: `field: what is wrong`. */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}
