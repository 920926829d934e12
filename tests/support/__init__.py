"""What the tests share: waits, free ports and in-process gateways, registering models, in-memory fakes.

The tests' own code: nothing here ships with Steward.
"""
