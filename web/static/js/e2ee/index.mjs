// Conclave E2EE core for the browser (and Node): formats and crypto only,
// WebCrypto only. The Go twin is internal/e2ee; docs/e2ee.md is the spec.
export * from './bytes.mjs';
export * from './sframe.mjs';
export * from './keys.mjs';
export * from './media.mjs';
export * from './identity.mjs';
export * from './announce.mjs';
export * from './pairwise.mjs';
export * from './chat.mjs';
export * from './files.mjs';
export * from './log.mjs';
export * from './round.mjs';
export * from './names.mjs';
