"""IRE's supervisor: the trusted side. Identity, policy, quotas, registry, audit, gRPC."""
