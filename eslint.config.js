// Lint rules: typescript-eslint with type information, and the layer table of DESIGN.md as import rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Who may import whom (DESIGN.md, "Layers and rooms"): each folder of src/
 * and the folders below it that it may import. An import that runs back up
 * the table, or sideways into a room not listed, fails the check.
 */
const LAYERS = {
  wire: [],
  nat: ['wire'],
  pool: [],
  linux: [],
  dataplane: ['nat', 'wire', 'linux'],
  session: ['pool', 'linux'],
  lease: ['wire', 'pool', 'linux'],
  relay: ['pool', 'linux'],
  gateway: ['session', 'dataplane', 'relay', 'lease', 'nat', 'pool', 'linux', 'wire'],
  control: ['gateway'],
  cli: ['control', 'gateway'],
};
const ROOMS = Object.keys(LAYERS);
/** Outside packages each room may use (besides node: modules where allowed). */
const PACKAGES = { pool: ['ip-address'], linux: ['koffi'], control: ['prom-client'], cli: ['cli-progress'] };

function layerRules(room) {
  const allowed = new Set([room, ...LAYERS[room]]);
  const banned = ROOMS.filter((r) => !allowed.has(r));
  const pkgs = PACKAGES[room] ?? [];
  const nodeOk = room !== 'wire' && room !== 'nat';
  const patterns = [
    {
      regex: `^(\\.\\.?/)+(${banned.join('|')})(/|\\.js$|$)`,
      message: `${room} may import only ${LAYERS[room].join(', ') || 'nothing of ours'} (DESIGN.md, "Layers and rooms").`,
    },
    // The public API (src/index.ts) and the entry points sit above every room.
    { regex: '^(\\.\\./)+index\\.js$', message: `${room} may not import upward (DESIGN.md).` },
    {
      // Outside packages: only those listed for the room; node: modules except in wire and nat.
      regex: `^(?!\\.|${nodeOk ? 'node:|' : ''}${pkgs.map((p) => `${p}$`).join('|') || '$^'})`,
      message: `${room} may use ${pkgs.length ? pkgs.join(', ') : 'no outside packages'}${nodeOk ? ' and node: modules' : ' and no node: modules'} (DESIGN.md).`,
    },
  ];
  return {
    files: [`src/${room}/**/*.ts`, ...(room === 'gateway' ? ['src/gateway.ts'] : [])],
    rules: { 'no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['dist/**', 'dist-tools/**', 'node_modules/**', 'bench/results/**', 'coverage/**', 'test/.api-example-*/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      // tsconfig.test.json covers src, test and bench: one program for the type-aware rules.
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
      globals: {
        performance: 'readonly',
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        URL: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  ...ROOMS.map(layerRules),
  {
    // The public API exports the gateway's, and nothing else of ours.
    files: ['src/index.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ regex: '^\\./(?!gateway/)', message: 'src/index.ts may import only gateway (DESIGN.md).' }] },
      ],
    },
  },
  {
    // Plain JavaScript (scripts, fixtures, examples) is not type-checked: no type-aware rules there.
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, parserOptions: { project: false, projectService: false } },
  },
);
