// ESLint (flat config): the recommended rules on the demo pages' JavaScript and the Node/browser
// tests. Run by scripts/lint.sh as `node_modules/.bin/eslint client-demo tests/e2e docs/examples`.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["client-demo/vendor/**", "node_modules/**", "artifacts/**"] },
  js.configs.recommended,
  {
    // The shared modules, the widget's and the console's: native ES modules in the browser.
    files: ["client-demo/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser, io: "readonly" },
    },
  },
  {
    // The one-tag embed stays a classic script (it imports the modules with import()).
    files: ["client-demo/widget.js"],
    languageOptions: { sourceType: "script" },
  },
  {
    files: ["tests/e2e/**/*.mjs", "docs/examples/**/*.mjs", "eslint.config.mjs"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      // Node, and the few browser globals of the callbacks that Playwright runs in the page
      // (page.evaluate).
      globals: { ...globals.node, document: "readonly", window: "readonly", getComputedStyle: "readonly" },
    },
  },
];
