// @ts-check
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "proto/gen/", "prisma/generated/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // server/ and agent/ never import each other: what they share lives in signing/, keys/, proto/.
      "no-restricted-imports": "off",
    },
  },
  {
    files: ["server/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/agent/*", "**/cli/*"], message: "server/ must not import agent/ or cli/" }] },
      ],
    },
  },
  {
    files: ["agent/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/server/*", "**/cli/*"], message: "agent/ must not import server/ or cli/" }] },
      ],
    },
  },
  {
    files: ["signing/**/*.ts", "keys/**/*.ts", "proto/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [{ group: ["**/server/*", "**/agent/*", "**/cli/*"], message: "shared code must not import server/, agent/ or cli/" }],
        },
      ],
    },
  },
  {
    files: ["examples/**/*.cjs"],
    languageOptions: { sourceType: "commonjs", globals: globals.node },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
