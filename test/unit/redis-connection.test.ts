import assert from 'node:assert/strict';
import { clusterUrlCredentials } from '../../src/store/redis-connection.js';

describe('Redis connection options', () => {
  it('takes the user and password of Cluster seed URLs for every node, decoded', () => {
    assert.deepEqual(clusterUrlCredentials(['redis://a:7000', 'redis://broker:p%40ss@b:7001']), {
      username: 'broker',
      password: 'p@ss',
    });
    assert.deepEqual(clusterUrlCredentials(['rediss://:secret@a:7000']), { password: 'secret' });
  });

  it('gives no credentials when the seed URLs carry none', () => {
    assert.deepEqual(clusterUrlCredentials(['redis://a:7000', 'redis://b:7001']), {});
  });
});
