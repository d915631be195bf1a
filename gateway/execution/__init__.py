"""Execution: the GraphQL schema, the root fields, fetching through the cache, introspection."""
