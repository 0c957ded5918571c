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

# Allowed when the shipped rules below grant the call and no violation forbids it.
#
# The shipped rules are written as the conditions of an allow, which is the fast path
# every allowed call takes; the reasons for a denial are worked out only when a call is
# denied (`refusals`). Each refusal states the opposite of one condition here, and
# authz_test.rego checks each pair.
allow if {
	input.version in supported_versions
	input.action in tenant_actions
	"predict" in input.principal.scopes
	input.principal.tenant == input.tenant.id
	input.model.owner == input.tenant.id
	within_tier_limits
	count(violations) == 0
}

allow if {
	input.version in supported_versions
	input.action in admin_actions
	"admin" in input.principal.scopes
	input.principal.tenant == input.tenant.id
	count(violations) == 0
}

# The tier's bounds hold for every tenant call (metadata calls have batch 0 and are small).
within_tier_limits if not tier_limits[input.tenant.tier]

within_tier_limits if {
	limits := tier_limits[input.tenant.tier]
	input.request.batch <= object.get(limits, "max_batch", input.request.batch)
	input.request.bytes <= object.get(limits, "max_request_bytes", input.request.bytes)
}

# To deny more, add a rule here: `violations contains msg if { ... }`. It always takes
# effect, because allow needs an empty `violations`, and msg becomes a reason. The
# shipped set adds none: this one never holds, and names the set.
violations contains msg if {
	false
	msg := ""
}

# The decision document the supervisor reads.
decision := {"allow": true, "reasons": []} if allow
else := {"allow": false, "reasons": reasons}

reasons := sort(refusals | violations) if count(refusals | violations) > 0
else := [sprintf("no rule grants %q", [object.get(input, "action", "")])]

# Why the shipped rules deny a call. Fields are read with object.get where they may be
# missing, so a malformed input still gets its reasons.
refusals contains msg if {
	not input.version in supported_versions
	msg := sprintf(
		"input version %v is not supported by this policy (expected one of %v)",
		[object.get(input, "version", null), supported_versions],
	)
}

refusals contains msg if {
	not input.action in tenant_actions
	not input.action in admin_actions
	msg := sprintf("unknown action %s", [json.marshal(object.get(input, "action", ""))])
}

refusals contains msg if {
	input.action in tenant_actions
	not "predict" in input.principal.scopes
	msg := sprintf("action %q needs scope 'predict'; the token has %v", [input.action, scopes])
}

refusals contains msg if {
	input.action in admin_actions
	not "admin" in input.principal.scopes
	msg := sprintf("action %q needs scope 'admin'; the token has %v", [input.action, scopes])
}

scopes := object.get(input, ["principal", "scopes"], [])

# Defence in depth: lookups already stay inside the token's tenant.
refusals contains "the token's tenant does not match the calling tenant" if {
	not input.principal.tenant == input.tenant.id
}

refusals contains "the model is outside the calling tenant's namespace" if {
	input.action in tenant_actions
	not input.model.owner == input.tenant.id
}

refusals contains msg if {
	input.action in tenant_actions
	limit := tier_limits[input.tenant.tier].max_batch
	input.request.batch > limit
	msg := sprintf("tier %q allows a batch of at most %d, got %v", [input.tenant.tier, limit, input.request.batch])
}

refusals contains msg if {
	input.action in tenant_actions
	limit := tier_limits[input.tenant.tier].max_request_bytes
	input.request.bytes > limit
	msg := sprintf("tier %q allows requests of at most %d bytes, got %v", [input.tenant.tier, limit, input.request.bytes])
}

refusals contains msg if {
	input.action in tenant_actions
	tier_limits[input.tenant.tier]
	not input.request.batch
	msg := sprintf("tier %q is bounded, and the request's batch is missing", [input.tenant.tier])
}

refusals contains msg if {
	input.action in tenant_actions
	tier_limits[input.tenant.tier]
	not input.request.bytes
	msg := sprintf("tier %q is bounded, and the request's bytes is missing", [input.tenant.tier])
}
