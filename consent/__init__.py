"""Data catalog, sharing agreements, data-subject consent and the policy decision."""
