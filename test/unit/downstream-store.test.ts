import { createMemoryStore } from '../../src/store/memory-store.js';
import { downstreamStoreContract } from './downstream-store-contract.js';
import { contractKeyRing } from './store-contract.js';

downstreamStoreContract('memory', () => createMemoryStore({ keyRing: contractKeyRing }));
