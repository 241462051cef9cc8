//! Validation of an Installation beyond what the API server's schema and CEL rules can express.
