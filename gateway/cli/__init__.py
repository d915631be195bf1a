"""The ``ketenpoort`` command line: serve, token, schema, documents, policy, audit, mocks."""
