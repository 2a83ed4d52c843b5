# Applied to flatc's output (see meson.build): renames generated types that collide with ours.
s/PolicyBuilder/PolicyTableBuilder/g
s/\bIdentity\b/IdentityTable/g
