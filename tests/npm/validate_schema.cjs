// Validates recorded wire documents against the JSON Schema 2020-12 files of
// tests/schema with the third-party validator ajv (ajv/dist/2020, plus
// ajv-formats for "format": "uri").
//
// Input (environment): AJV_PKG_DIR (folder holding node_modules/ajv and
// node_modules/ajv-formats), SCHEMA_DIR (tests/schema), ITEMS_FILE (a JSON
// array of {"name", "schema", "extension", "doc"}: `schema` and `extension`
// are "<file>#/$defs/<Name>" references, `extension` may be null, `doc` is
// the parsed document).
//
// Output: one JSON line, an array with one entry per item:
//   {"name", "strict_ok", "strict_errors": [{"path", "keyword", "message"}],
//    "extension_ok", "extension_errors": [...]}
// The script judges nothing itself; the C++ test makes the assertions. Exit
// status non-zero only when the script cannot run (missing package, bad
// schema: ajv compiles in strict mode, so a schema mistake is an error).
'use strict';

const fs = require('fs');
const path = require('path');

function load(name) {
  return require(require.resolve(name, {
    paths: [path.join(process.env.AJV_PKG_DIR, 'node_modules')],
  }));
}

function main() {
  const Ajv2020 = load('ajv/dist/2020').default || load('ajv/dist/2020');
  const addFormatsModule = load('ajv-formats');
  const addFormats = addFormatsModule.default || addFormatsModule;
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  const dir = process.env.SCHEMA_DIR;
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  const base = 'https://sail-tinker.invalid/schema/';
  for (const f of files) {
    const schema = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (schema.$id !== base + f)
      throw new Error(`${f}: $id must be ${base + f}`);
    ajv.addSchema(schema);
  }
  // Compile everything up front: a schema error fails the run.
  for (const f of files) {
    const schema = ajv.getSchema(base + f).schema;
    for (const name of Object.keys(schema.$defs || {}))
      ajv.getSchema(`${base + f}#/$defs/${name}`);
  }
  const validator = (ref) => {
    const v = ajv.getSchema(base + ref);
    if (!v)
      throw new Error(`unknown schema reference ${ref}`);
    return v;
  };
  const errors = (v) => (v.errors || []).map((e) => ({
    path: e.instancePath,
    keyword: e.keyword,
    message: e.message,
  }));
  const items = JSON.parse(fs.readFileSync(process.env.ITEMS_FILE, 'utf8'));
  const out = items.map((item) => {
    const strict = validator(item.schema);
    const strictOk = strict(item.doc);
    const result = {
      name: item.name,
      strict_ok: strictOk,
      strict_errors: strictOk ? [] : errors(strict),
      extension_ok: null,
      extension_errors: [],
    };
    if (item.extension) {
      const ext = validator(item.extension);
      result.extension_ok = ext(item.doc);
      result.extension_errors = result.extension_ok ? [] : errors(ext);
    }
    return result;
  });
  process.stdout.write(JSON.stringify(out) + '\n');
}

try {
  main();
} catch (err) {
  process.stderr.write('schema validation failed to run: ' + (err && err.stack) + '\n');
  process.exit(1);
}
