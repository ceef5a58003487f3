// The test suite's default engine: plain wasm, the portable reference that every expected value
// was computed with. CLI runs spawned by tests inherit it; set CREPE_BACKEND to test another
// engine (the BLAS agreement tests in test/blas.test.ts choose theirs explicitly).
process.env.CREPE_BACKEND = process.env.CREPE_BACKEND || 'wasm';
