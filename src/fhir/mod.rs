//! PURE mapping `Reading` → FHIR R4 Observation/Device resources and Bundles (issue #3).
//! No I/O, no clock, no logging of values.
