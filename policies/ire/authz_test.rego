package ire.authz_test

tenant_call(action) := {
	"version": 1,
	"action": action,
	"principal": {"sub": "acme-app", "scopes": ["predict"], "tenant": "acme"},
	"tenant": {"id": "acme", "tier": "standard", "labels": {}},
	"model": {"name": "mlp", "version": "1", "owner": "acme", "sha256": "ab", "signer": "", "labels": {}},
	"request": {"bytes": 256, "batch": 1, "peer": "127.0.0.1"},
	"usage": {},
	"resource": {},
	"time": {"ns": 1764000000000000000},
}

admin_call(action, scopes) := {
	"version": 1,
	"action": action,
	"principal": {"sub": "ops", "scopes": scopes, "tenant": "ops"},
	"tenant": {"id": "ops", "tier": "standard", "labels": {}},
	"model": {},
	"request": {"bytes": 0, "batch": 0, "peer": "127.0.0.1"},
	"usage": {},
	"resource": {"kind": "tenant", "name": "newco"},
	"time": {"ns": 1764000000000000000},
}

test_tenant_actions_allowed_with_predict_scope if {
	every action in data.ire.authz.tenant_actions {
		data.ire.authz.decision == {"allow": true, "reasons": []} with input as tenant_call(action)
	}
}

test_predict_without_predict_scope_denied if {
	d := data.ire.authz.decision with input as object.union(tenant_call("predict"), {"principal": {"sub": "x", "scopes": ["admin"], "tenant": "acme"}})
	not d.allow
	d.reasons == [`action "predict" needs scope 'predict'; the token has ["admin"]`]
}

test_metadata_without_scope_denied if {
	d := data.ire.authz.decision with input as object.union(tenant_call("model_metadata"), {"principal": {"sub": "x", "scopes": [], "tenant": "acme"}})
	not d.allow
}

test_admin_actions_allowed_with_admin_scope if {
	every action in data.ire.authz.admin_actions {
		data.ire.authz.allow with input as admin_call(action, ["admin"])
	}
}

test_admin_action_without_admin_scope_denied if {
	d := data.ire.authz.decision with input as admin_call("admin.tenant.create", ["predict"])
	not d.allow
	d.reasons == [`action "admin.tenant.create" needs scope 'admin'; the token has ["predict"]`]
}

test_admin_scope_does_not_grant_predict if {
	not data.ire.authz.allow with input as object.union(tenant_call("predict"), {"principal": {"sub": "x", "scopes": ["admin"], "tenant": "acme"}})
}

test_unknown_action_denied if {
	d := data.ire.authz.decision with input as tenant_call("model_delete")
	not d.allow
	d.reasons == [`unknown action "model_delete"`]
}

test_unsupported_input_version_denied if {
	d := data.ire.authz.decision with input as object.union(tenant_call("predict"), {"version": 2})
	not d.allow
	startswith(d.reasons[0], "input version 2 is not supported")
}

test_other_tenants_model_denied if {
	d := data.ire.authz.decision with input as object.union(tenant_call("predict"), {"model": {"owner": "globex"}})
	not d.allow
	d.reasons == ["the model is outside the calling tenant's namespace"]
}

test_token_tenant_mismatch_denied if {
	d := data.ire.authz.decision with input as object.union(tenant_call("predict"), {"tenant": {"id": "globex", "tier": "free", "labels": {}}})
	not d.allow
	"the token's tenant does not match the calling tenant" in d.reasons
}

test_free_tier_batch_bound if {
	free := object.union(tenant_call("predict"), {"tenant": {"tier": "free"}})
	data.ire.authz.allow with input as object.union(free, {"request": {"batch": 32}})
	d := data.ire.authz.decision with input as object.union(free, {"request": {"batch": 33}})
	d.reasons == [`tier "free" allows a batch of at most 32, got 33`]
}

test_free_tier_bytes_bound if {
	free := object.union(tenant_call("predict"), {"tenant": {"tier": "free"}})
	d := data.ire.authz.decision with input as object.union(free, {"request": {"bytes": 1048577}})
	d.reasons == [`tier "free" allows requests of at most 1048576 bytes, got 1048577`]
}

test_standard_tier_has_no_policy_bound if {
	data.ire.authz.allow with input as object.union(tenant_call("predict"), {"request": {"batch": 100000, "bytes": 100000000}})
}

test_denial_without_violation_still_gives_a_reason if {
	# Should a future rule deny without naming a violation, the caller still gets a reason.
	d := data.ire.authz.decision with input as tenant_call("model_ready") with data.ire.authz.allow as false
	d == {"allow": false, "reasons": [`no rule grants "model_ready"`]}
}

test_empty_input_denied_with_reasons if {
	d := data.ire.authz.decision with input as {}
	not d.allow
	d.reasons == [
		"input version null is not supported by this policy (expected one of {1})",
		"the token's tenant does not match the calling tenant",
		`unknown action ""`,
	]
}

test_added_violation_always_denies if {
	# The extension point: a rule an admin adds to violations denies even a call the
	# shipped rules allow, and names its reason.
	d := data.ire.authz.decision with input as tenant_call("predict")
		with data.ire.authz.violations as {"predictions are paused"}
	d == {"allow": false, "reasons": ["predictions are paused"]}
}

test_added_violation_joins_the_shipped_reasons if {
	d := data.ire.authz.decision with input as object.union(tenant_call("predict"), {"model": {"owner": "globex"}})
		with data.ire.authz.violations as {"predictions are paused"}
	d.reasons == ["predictions are paused", "the model is outside the calling tenant's namespace"]
}

test_missing_tenant_facts_denied if {
	# Compared fields that are absent never match: a malformed input is refused with a reason.
	call := json.remove(tenant_call("predict"), ["principal/tenant", "model/owner"])
	d := data.ire.authz.decision with input as call
	not d.allow
	d.reasons == ["the model is outside the calling tenant's namespace", "the token's tenant does not match the calling tenant"]
}

test_free_tier_bounds_hold_for_metadata_calls if {
	free := object.union(tenant_call("model_metadata"), {"tenant": {"tier": "free"}})
	data.ire.authz.allow with input as free
	d := data.ire.authz.decision with input as object.union(free, {"request": {"bytes": 1048577}})
	d.reasons == [`tier "free" allows requests of at most 1048576 bytes, got 1048577`]
}

test_free_tier_call_without_request_facts_denied if {
	free := object.union(tenant_call("predict"), {"tenant": {"tier": "free"}})
	d := data.ire.authz.decision with input as json.remove(free, ["request"])
	d == {"allow": false, "reasons": [
		`tier "free" is bounded, and the request's batch is missing`,
		`tier "free" is bounded, and the request's bytes is missing`,
	]}
}
