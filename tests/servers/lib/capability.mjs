// The CapabilityStatement (GET [base]/metadata) and SMART configuration
// (GET [base]/.well-known/smart-configuration) of the test FHIR server.

import { resourceTypes, searchParamsOf } from './fhir-defs.mjs';

const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'].map(
  (code) => ({ code })
);

/*
 * Builds the CapabilityStatement. `tokenUrl` is set when SMART auth is on;
 * it is then advertised in rest.security (oauth-uris extension).
 */
export function buildCapabilityStatement({ baseUrl, tokenUrl, softwareVersion = '1.0.0' }) {
  const resource = [...resourceTypes()].sort().map((type) => {
    const params = searchParamsOf(type);
    const searchParam = Object.keys(params)
      .filter((code) => code !== '_compartment') // medplum-internal
      .sort()
      .map((code) => {
        const sp = params[code];
        const out = { name: code, type: sp.type };
        if (sp.url) out.definition = sp.url;
        return out;
      });
    return {
      type,
      interaction: INTERACTIONS,
      versioning: 'versioned',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalUpdate: true,
      conditionalDelete: 'single',
      searchParam,
    };
  });
  const rest = {
    mode: 'server',
    resource,
    interaction: [{ code: 'transaction' }, { code: 'batch' }],
  };
  if (tokenUrl) {
    rest.security = {
      cors: false,
      service: [
        {
          coding: [
            {
              system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
              code: 'SMART-on-FHIR',
            },
          ],
          text: 'OAuth2 using SMART-on-FHIR profile (backend services)',
        },
      ],
      extension: [
        {
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [{ url: 'token', valueUri: tokenUrl }],
        },
      ],
    };
  }
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2024-01-01',
    publisher: 'fhir-redcap-bridge tests',
    kind: 'instance',
    software: { name: 'fhir-redcap-bridge test FHIR server (@medplum/fhir-router 4.5.2)', version: softwareVersion },
    implementation: { description: 'In-memory FHIR R4 test server', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [rest],
  };
}

/* The SMART App Launch configuration document for backend services. */
export function buildSmartConfiguration({ tokenUrl }) {
  return {
    token_endpoint: tokenUrl,
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: ['system/*.read', 'system/*.rs', 'system/*.write', 'system/*.*'],
    capabilities: ['client-confidential-asymmetric'],
  };
}
