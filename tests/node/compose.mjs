// Composes Federation v2 subgraphs with Apollo's composition library (@apollo/composition).
// Input on stdin: a JSON array of {"name", "url", "sdl"}. Output on stdout: one JSON object
// {"errors": [{code, message}], "hints": [{code, message}], "supergraphSdl": string | null}.
// Exit 0 when composition produced a supergraph (errors and hints are for the caller to judge).
import { readFileSync } from 'node:fs';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';

const services = JSON.parse(readFileSync(0, 'utf8')).map(({ name, url, sdl }) => ({
  name,
  url,
  typeDefs: parse(sdl),
}));
const result = composeServices(services);
const errors = (result.errors ?? []).map((e) => ({
  code: e.extensions?.code ?? null,
  message: e.message,
}));
const hints = (result.hints ?? []).map((h) => ({
  code: h.definition?.code ?? null,
  message: h.message,
}));
console.log(JSON.stringify({ errors, hints, supergraphSdl: result.supergraphSdl ?? null }));
process.exit(result.supergraphSdl ? 0 : 1);
