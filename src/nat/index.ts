// Public surface of the nat layer: the flow table and the translator.
export * from './flows.js';
export * from './translate.js';
