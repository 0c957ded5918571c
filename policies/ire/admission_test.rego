package ire.admission_test

register := {
	"version": 1,
	"action": "model.register",
	"principal": {"sub": "acme-cli", "scopes": ["admin"], "tenant": "acme"},
	"tenant": {"id": "acme", "tier": "standard", "labels": {}},
	"model": {"name": "mlp", "version": "1", "owner": "acme", "sha256": "ab", "signer": "acme-key", "labels": {}, "byte_size": 1024},
	"graph": {"ir_version": 9, "opsets": {"": 17}, "operator_domains": [""], "external_data": [], "node_count": 5},
	"time": {"ns": 1764000000000000000},
}

test_plain_model_admitted if {
	data.ire.admission.decision == {"allow": true, "reasons": []} with input as register
	data.ire.admission.allow with input as object.union(register, {"action": "model.load"})
}

test_custom_operator_domain_refused if {
	d := data.ire.admission.decision with input as object.union(register, {"graph": {"operator_domains": ["", "evil.ops"]}})
	d == {"allow": false, "reasons": [`operator domain "evil.ops" is not allowed`]}
}

test_external_data_refused if {
	d := data.ire.admission.decision with input as object.union(register, {"graph": {"external_data": ["weights.bin"]}})
	d.reasons == [`the model references external data "weights.bin"; only self-contained models are admitted`]
}

test_free_tier_model_size_bound if {
	free := object.union(register, {"tenant": {"tier": "free"}})
	data.ire.admission.allow with input as object.union(free, {"model": {"byte_size": 67108864}})
	d := data.ire.admission.decision with input as object.union(free, {"model": {"byte_size": 67108865}})
	d.reasons == [`tier "free" admits models of at most 67108864 bytes, got 67108865`]
}

test_other_tenants_model_refused if {
	d := data.ire.admission.decision with input as object.union(register, {"model": {"owner": "globex"}})
	d.reasons == ["the model belongs to another tenant"]
}

test_unknown_action_refused if {
	d := data.ire.admission.decision with input as object.union(register, {"action": "model.delete"})
	d == {"allow": false, "reasons": [`unknown action "model.delete"`]}
}

test_unsupported_version_refused if {
	d := data.ire.admission.decision with input as object.union(register, {"version": 7})
	not d.allow
	startswith(d.reasons[0], "input version 7")
}

test_empty_input_refused_with_reasons if {
	d := data.ire.admission.decision with input as {}
	not d.allow
	d.reasons == ["input version null is not supported by this policy (expected one of {1})"]
}
