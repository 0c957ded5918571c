# IRE authorisation: decides every tenant call and every admin action.
#
# The supervisor evaluates data.ire.authz.decision with the input document described in
# docs/policies.md (input.version 1) and reads {"allow": bool, "reasons": [string]}.
# Anything else (an error, no value, a malformed value) refuses the call.
#
# Reasons are written for the caller: they are audited, and shown in PERMISSION_DENIED
# unless policy.show_reasons is false. Never put a secret in a reason.
package ire.authz

# Input versions this policy understands.
supported_versions := {1}

# Calls on a tenant's own models, granted by the "predict" scope.
tenant_actions := {"predict", "model_metadata", "model_ready"}

# Admin API actions, granted by the "admin" scope.
admin_actions := {
	"admin.tenant.create", "admin.tenant.list", "admin.tenant.update", "admin.tenant.suspend",
	"admin.tenant.delete", "admin.quota.set", "admin.quota.get", "admin.token.issue",
	"admin.token.revoke", "admin.signer.add", "admin.signer.list", "admin.signer.remove",
	"admin.model.register", "admin.model.list", "admin.model.delete", "admin.policy.reload",
	"admin.audit.checkpoint",
}

# Per-tier bounds on one prediction, on top of the server's own limits. A tier that is
# not listed has no bounds here.
tier_limits := {"free": {"max_batch": 32, "max_request_bytes": 1048576}}

default allow := false

# Allowed when a rule grants the action and no rule forbids it: a policy author denies
# more by adding a violation, and that violation always takes effect.
allow if {
	granted
	count(violations) == 0
}

granted if {
	input.action in tenant_actions
	"predict" in input.principal.scopes
}

granted if {
	input.action in admin_actions
	"admin" in input.principal.scopes
}

# The decision document the supervisor reads.
decision := {"allow": true, "reasons": []} if allow
else := {"allow": false, "reasons": reasons}

reasons := sort(violations) if count(violations) > 0
else := [sprintf("no rule grants %q", [object.get(input, "action", "")])]

# Why a call is denied: to deny more, add a rule here. Fields are read with object.get
# where they may be missing, so a malformed input still gets its reasons.
violations contains msg if {
	not input.version in supported_versions
	msg := sprintf(
		"input version %v is not supported by this policy (expected one of %v)",
		[object.get(input, "version", null), supported_versions],
	)
}

violations contains msg if {
	not input.action in tenant_actions
	not input.action in admin_actions
	msg := sprintf("unknown action %q", [object.get(input, "action", "")])
}

violations contains msg if {
	input.action in tenant_actions
	not "predict" in input.principal.scopes
	msg := sprintf("action %q needs scope 'predict'; the token has %v", [input.action, scopes])
}

violations contains msg if {
	input.action in admin_actions
	not "admin" in input.principal.scopes
	msg := sprintf("action %q needs scope 'admin'; the token has %v", [input.action, scopes])
}

scopes := object.get(input, ["principal", "scopes"], [])

# Defence in depth: lookups already stay inside the token's tenant.
violations contains "the token's tenant does not match the calling tenant" if {
	object.get(input, ["principal", "tenant"], "") != object.get(input, ["tenant", "id"], "")
}

violations contains "the model is outside the calling tenant's namespace" if {
	input.action in tenant_actions
	object.get(input, ["model", "owner"], "") != object.get(input, ["tenant", "id"], "")
}

violations contains msg if {
	input.action == "predict"
	limit := tier_limits[input.tenant.tier].max_batch
	input.request.batch > limit
	msg := sprintf("tier %q allows a batch of at most %d, got %d", [input.tenant.tier, limit, input.request.batch])
}

violations contains msg if {
	input.action == "predict"
	limit := tier_limits[input.tenant.tier].max_request_bytes
	input.request.bytes > limit
	msg := sprintf("tier %q allows requests of at most %d bytes, got %d", [input.tenant.tier, limit, input.request.bytes])
}
