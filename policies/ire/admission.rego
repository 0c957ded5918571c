# IRE model admission: decides which models may be registered and loaded.
#
# The supervisor evaluates data.ire.admission.decision with the input document described
# in docs/policies.md (input.version 1, actions "model.register" and "model.load"), whose
# "graph" holds the facts read from the ONNX bytes without running them. The decision has
# the same shape as ire.authz: {"allow": bool, "reasons": [string]}.
package ire.admission

supported_versions := {1}

actions := {"model.register", "model.load"}

# Operator domains ONNX Runtime implements itself. A custom domain means a custom-op
# library, i.e. native code IRE did not ship. ('' and "ai.onnx" are the same domain.)
allowed_domains := {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}

# Largest model per tenant tier, in bytes; tiers not listed are bounded only by the server.
tier_max_model_bytes := {"free": 67108864}

default allow := false

allow if {
	input.version in supported_versions
	input.action in actions
	count(violations) == 0
}

decision := {"allow": true, "reasons": []} if allow
else := {"allow": false, "reasons": reasons}

reasons := sort(violations) if count(violations) > 0
else := [sprintf("unknown action %q", [object.get(input, "action", "")])]

violations contains msg if {
	not input.version in supported_versions
	msg := sprintf(
		"input version %v is not supported by this policy (expected one of %v)",
		[object.get(input, "version", null), supported_versions],
	)
}

# External data would make the model read files the signature does not cover.
violations contains msg if {
	some location in input.graph.external_data
	msg := sprintf("the model references external data %q; only self-contained models are admitted", [location])
}

violations contains msg if {
	some domain in input.graph.operator_domains
	not domain in allowed_domains
	msg := sprintf("operator domain %q is not allowed", [domain])
}

violations contains msg if {
	limit := tier_max_model_bytes[input.tenant.tier]
	input.model.byte_size > limit
	msg := sprintf("tier %q admits models of at most %d bytes, got %d", [input.tenant.tier, limit, input.model.byte_size])
}

violations contains "the model belongs to another tenant" if {
	object.get(input, ["model", "owner"], "") != object.get(input, ["tenant", "id"], "")
}
