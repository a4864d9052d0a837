// The integration tests' lab: the one lab module (test/lab/) under its old name, so that tests and other branches keep importing './lab.js'.
export * from '../lab/index.js';
