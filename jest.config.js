/** Tests run TypeScript directly (transpile only: `npm run build` type-checks first). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  testTimeout: 120000,
  maxWorkers: 2,
  setupFiles: ['<rootDir>/test/engine-default.js'],
};
