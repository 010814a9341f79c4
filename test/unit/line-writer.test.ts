import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import {
  BatchedStdout,
  createLogger,
  jsonField,
  LineWriter,
  STDOUT_FLUSH_CHARS,
  type Logger,
} from '../../src/logger.js';

/** A logger whose raw output (not split, not parsed) is kept, to compare bytes. */
function rawLogger(level = 'info'): { logger: Logger; out: string[] } {
  const out: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk.toString('utf8'));
      callback();
    },
  });
  return { logger: createLogger({ level, destination }), out };
}

/** The time field differs between two lines written in different milliseconds. */
const withoutTime = (line: string) => line.replace(/,"time":"[^"]*"/, ',"time":"T"');

const KEYS = ['requestId', 'status', 'durationMs', 'user', 'caller', 'cause'] as const;

describe('LineWriter (fixed-shape log lines)', () => {
  it('writes the bytes pino writes for the same fields, undefined fields omitted, strings escaped', () => {
    const { logger, out } = rawLogger();
    const child = logger.child({ rpc: 'GetValidSubjectToken' });
    const writer = LineWriter.for(child, 'call', KEYS);
    assert.ok(writer, 'a logger from createLogger takes the fixed path');
    const samples: Record<(typeof KEYS)[number], string | number | undefined>[] = [
      {
        requestId: 'r-1',
        status: 'OK',
        durationMs: 0.125,
        user: 'ab12',
        caller: undefined,
        cause: undefined,
      },
      {
        requestId: 'r-2',
        status: 'FAILED_PRECONDITION',
        durationMs: 12,
        user: undefined,
        caller: 'CN=a "quoted", \\ back\nslash \u0001 ünï \ud800',
        cause: 'NO_TOKEN',
      },
      { requestId: 'r-3', status: 'OK', durationMs: Number.NaN, user: '', caller: '', cause: undefined },
      { requestId: 'r-4', status: 'OK', durationMs: 1e21, user: 'ünïcödé', caller: '😀', cause: '\t' },
    ];
    for (const fields of samples) {
      child.info(fields, 'call');
      writer.write(KEYS.map((k) => fields[k]));
    }
    assert.equal(out.length, samples.length * 2);
    for (let i = 0; i < samples.length; i++) {
      const viaPino = withoutTime(out[2 * i]!);
      const fixed = withoutTime(out[2 * i + 1]!);
      assert.equal(fixed, viaPino);
      assert.deepEqual(JSON.parse(fixed), JSON.parse(viaPino));
    }
  });

  it('on the stdout batch, formats lines when the batch is written: same bytes, same order, the time of the write', () => {
    const batches: string[] = [];
    const stdout = new BatchedStdout({ write: (lines: string) => batches.push(lines) });
    const logger = createLogger({ destination: stdout }).child({ rpc: 'GetValidSubjectToken' });
    const writer = LineWriter.for(logger, 'call', KEYS)!;
    const fields = {
      requestId: 'r-1',
      status: 'OK',
      durationMs: 0.5,
      user: 'ab"12',
      caller: 'ünï',
      cause: undefined,
    };
    const values = KEYS.map((k) => fields[k]);
    const before = Date.now();
    writer.write(values);
    const after = Date.now();
    // Later, in another millisecond: a line through pino, then the writer's line again.
    while (Date.now() < after + 3) {
      // busy: no timer runs, so nothing is written meanwhile
    }
    logger.info(fields, 'call');
    writer.write(values);
    assert.equal(batches.length, 0, 'nothing written before the batch is');
    stdout.drain();
    assert.equal(batches.length, 1);
    const lines = batches[0]!.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 3);
    assert.equal(withoutTime(lines[0]!), withoutTime(lines[1]!), 'the bytes pino writes');
    assert.equal(withoutTime(lines[2]!), withoutTime(lines[0]!));
    const first = Date.parse((JSON.parse(lines[0]!) as { time: string }).time);
    assert.ok(
      first >= before && first <= after,
      'the first line has the time it was written, not the time of the batch',
    );
    assert.ok(Date.parse((JSON.parse(lines[2]!) as { time: string }).time) > after);
  });

  it('on the stdout batch, keeps the order of the call and audit loggers sharing it, and writes at the size bound', () => {
    const batches: string[] = [];
    const stdout = new BatchedStdout({ write: (lines: string) => batches.push(lines) });
    const calls = createLogger({ destination: stdout }).child({ rpc: 'GetValidSubjectToken' });
    const audit = createLogger({ destination: stdout, name: 'audit' });
    const callLine = LineWriter.for(calls, 'call', ['requestId'])!;
    const auditLine = LineWriter.for(audit, 'audit', ['event', 'requestId'])!;
    // Enough lines to pass the size bound twice, before any timer could run.
    const n = Math.ceil((2.5 * STDOUT_FLUSH_CHARS) / (2 * 512));
    for (let i = 0; i < n; i++) {
      callLine.write([`r-${i}`]);
      auditLine.write(['token_release', `r-${i}`]);
      calls.warn({ requestId: `r-${i}` }, 'through pino');
    }
    assert.equal(batches.length, 2, 'written at the size bound');
    stdout.drain();
    const lines = batches
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 3 * n);
    for (let i = 0; i < n; i++) {
      assert.deepEqual(
        lines.slice(3 * i, 3 * i + 3).map((l) => [l.name, l.msg, l.requestId]),
        [
          ['credbroker', 'call', `r-${i}`],
          ['audit', 'audit', `r-${i}`],
          ['credbroker', 'through pino', `r-${i}`],
        ],
      );
    }
  });

  it('loses only a line that cannot be formatted, says so once on stderr, and never throws', () => {
    const batches: string[] = [];
    const stdout = new BatchedStdout({ write: (lines: string) => batches.push(lines) });
    const writer = LineWriter.for(createLogger({ destination: stdout }), 'call', ['requestId'])!;
    const unprintable = {
      toString() {
        throw new Error('no');
      },
    } as unknown as string;
    const reported: string[] = [];
    const original = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) =>
      reported.push(String(chunk)) > 0) as typeof process.stderr.write;
    try {
      writer.write(['before']);
      writer.write([unprintable]);
      writer.write([unprintable]);
      writer.write(['after']);
      stdout.drain();
    } finally {
      process.stderr.write = original;
    }
    const ids = batches
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (JSON.parse(l) as { requestId: string }).requestId);
    assert.deepEqual(ids, ['before', 'after']);
    assert.equal(reported.length, 1);
    assert.match(reported[0]!, /formatting a log line failed/);
  });

  it('escapes a lone surrogate (pino writes it raw, which is not valid UTF-8)', () => {
    assert.equal(jsonField('caller', 'a\udc00'), ',"caller":"a\\udc00"');
    assert.equal(jsonField('caller', '😀'), ',"caller":"😀"');
  });

  it('follows the logger level, also when it changes', () => {
    const { logger, out } = rawLogger('warn');
    const writer = LineWriter.for(logger, 'call', KEYS)!;
    assert.equal(writer.enabled, false);
    logger.level = 'info';
    assert.equal(writer.enabled, true);
    logger.level = 'silent';
    assert.equal(writer.enabled, false);
    assert.equal(out.length, 0);
  });

  it('is not used for a logger that redacts or serializes one of its keys, has a mixin, or wants metadata', () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    assert.equal(LineWriter.for(createLogger({ destination: sink }), 'x', ['token']), undefined);
    assert.equal(LineWriter.for(pino({ redact: ['user'] }, sink), 'x', ['user']), undefined);
    assert.equal(LineWriter.for(pino({ serializers: { user: String } }, sink), 'x', ['user']), undefined);
    assert.equal(LineWriter.for(pino({ mixin: () => ({}) }, sink), 'x', ['user']), undefined);
    assert.equal(LineWriter.for(pino({ formatters: { log: (o) => o } }, sink), 'x', ['user']), undefined);
    assert.equal(LineWriter.for(pino({}, pino.multistream([{ stream: sink }])), 'x', ['user']), undefined);
    const prefixed = createLogger({ destination: sink }).child({}, { msgPrefix: '[p] ' });
    assert.equal(LineWriter.for(prefixed, 'x', ['user']), undefined, 'a msgPrefix would be lost');
    assert.notEqual(LineWriter.for(createLogger({ destination: sink }), 'x', ['user']), undefined);
  });
});
