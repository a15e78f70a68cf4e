"""The provider conformance suite, importable so any provider can run it."""
