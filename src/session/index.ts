// Public surface of the session layer.
export * from './session.js';
